// Tiny DOM helpers: build elements, escape text, show errors and loading states.
import { ApiError } from "./api";

type Attrs = Record<string, string | boolean | number | ((ev: any) => void) | undefined | null>;

export function h(tag: string, attrs: Attrs = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function field(label: string, input: HTMLElement): HTMLElement {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

export function mount(...nodes: (Node | string)[]): void {
  const app = document.getElementById("app")!;
  app.replaceChildren(...nodes);
}

export function loading(what = "Loading…"): HTMLElement {
  return h("p", { class: "loading", role: "status" }, what);
}

export function flash(message: string, kind: "error" | "ok" = "error"): void {
  const box = document.getElementById("flash")!;
  box.replaceChildren(h("p", { class: `flash ${kind}` }, message));
  if (kind === "ok") setTimeout(() => box.replaceChildren(), 4000);
}

export function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export function showError(err: unknown): void {
  flash(errorText(err));
}

/** Run `work` with `button` disabled and marked busy; errors go to the flash area. */
export async function busy<T>(button: HTMLButtonElement | null, work: () => Promise<T>): Promise<T | undefined> {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  try {
    document.getElementById("flash")!.replaceChildren();
    return await work();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }
}

export function when(ts: string | null | undefined): string {
  return ts ? new Date(ts).toLocaleString() : "never";
}

/** Run `work` at most once every `ms` however often `run` is called (the last call wins). */
export function throttle(work: () => Promise<void>, ms: number): { run: () => void; stop: () => void } {
  let last = Date.now(); // the page has just loaded what it shows
  let timer: number | undefined;
  return {
    run: () => {
      if (timer !== undefined) return;
      timer = window.setTimeout(() => {
        timer = undefined;
        last = Date.now();
        work().catch(() => undefined);
      }, Math.max(0, last + ms - Date.now()));
    },
    stop: () => window.clearTimeout(timer),
  };
}
