// Calls to the Sensorhub API with the signed-in user's Firebase ID token; problem+json
// answers become readable errors (a 429 says how long to wait).
export type Json = Record<string, any>;

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly retryAfterS: number | null = null,
  ) {
    super(message);
  }
}

let tokenSource: () => Promise<string | null> = async () => null;

export function useToken(source: () => Promise<string | null>): void {
  tokenSource = source;
}

export const API = "/api/v1";

export async function call<T = Json>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const token = await tokenSource();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch(API + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The server could not be reached. Check your connection and retry.", 0);
  }
  if (resp.status === 204) return undefined as T;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw problem(resp, data);
  return data as T;
}

export async function download(path: string, filename: string): Promise<void> {
  const token = await tokenSource();
  const resp = await fetch(API + path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!resp.ok) throw problem(resp, await resp.json().catch(() => ({})));
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  URL.revokeObjectURL(url);
}

function problem(resp: Response, data: Json): ApiError {
  if (resp.status === 429) {
    const wait = Number(resp.headers.get("Retry-After") ?? "0");
    return new ApiError(`Too many requests: try again in ${wait} s.`, 429, wait);
  }
  let text = data.detail || data.title || `Request failed (${resp.status})`;
  if (Array.isArray(data.errors) && data.errors.length) {
    const parts = data.errors.map((e: Json) => {
      const where = Array.isArray(e.loc) ? e.loc.filter((x: unknown) => x !== "body").join(".") : e.field ?? "";
      return where ? `${where}: ${e.msg ?? e.message ?? ""}` : e.msg ?? e.message ?? "";
    });
    text = `${data.title ?? "Invalid input"}: ${parts.join("; ")}`;
  }
  return new ApiError(text, resp.status);
}
