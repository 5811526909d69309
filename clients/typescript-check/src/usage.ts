// What an app team writes against the generated client (`make client-check` type-checks it):
// sign in, create a device, post a reading as the device, read the latest value.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

type Problem = components["schemas"]["Problem"];

export async function tour(baseUrl: string, firebaseIdToken: string): Promise<number | null> {
  const api = createClient<paths>({ baseUrl });

  // Sign in: a Firebase ID token for the API's own session tokens.
  const session = await api.POST("/api/v1/auth/session", {
    body: { id_token: firebaseIdToken },
  });
  if (session.error) {
    const problem: Problem = session.error;
    throw new Error(`${problem.status} ${problem.title}: ${problem.detail}`);
  }
  const auth = { Authorization: `Bearer ${session.data.access_token}` };

  // A product, then a device of it; the device's key is shown this once.
  const product = await api.POST("/api/v1/products", {
    headers: auth,
    body: { name: "Thermometer", sku: "TH-1" },
  });
  if (product.error) throw new Error(product.error.detail);
  const device = await api.POST("/api/v1/devices", {
    headers: auth,
    body: { name: "Kitchen", serial: "SN-0001", product_id: product.data.id },
  });
  if (device.error) throw new Error(device.error.detail);
  const deviceId: string = device.data.id;
  const deviceKey: string = device.data.key;

  // The device posts one reading (a batch is `{ readings: [...] }`).
  const posted = await api.POST("/api/v1/devices/{device_id}/readings", {
    params: { path: { device_id: deviceId }, header: { "Idempotency-Key": "first" } },
    headers: { "X-Device-Key": deviceKey },
    body: { ts: new Date().toISOString(), metrics: { temperature: 21.5 } },
  });
  if (posted.error) {
    if (posted.response.status === 429) {
      const retryAfter = posted.response.headers.get("Retry-After");
      throw new Error(`rate limited, retry in ${retryAfter} s`);
    }
    throw new Error(posted.error.detail);
  }
  const accepted: number = posted.data.accepted;

  // Read the latest values back as the user.
  const latest = await api.GET("/api/v1/devices/{device_id}/readings/latest", {
    params: { path: { device_id: deviceId }, query: { metrics: "temperature" } },
    headers: auth,
  });
  if (latest.error) throw new Error(latest.error.detail);
  const temperature = latest.data.metrics["temperature"];
  if (accepted < 1 || temperature === undefined) return null;
  return typeof temperature.value === "number" ? temperature.value : null;
}
