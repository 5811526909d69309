// Alarms: a device's alarms (on its page) and the fleet's (the Alarms page), with acknowledge
// and clear; alert rules with a form generated per condition type (README "Alerts").
import { call, type Json } from "./api";
import { busy, errorText, field, flash, h, loading, mount, showError, throttle, when } from "./dom";
import { watchAlarms } from "./live";

const q = encodeURIComponent;
export const SEVERITIES = ["critical", "major", "minor", "warning", "info"];

function options(values: string[], labels: Record<string, string> = {}): HTMLElement[] {
  return values.map((v) => h("option", { value: v }, labels[v] ?? (v || "any")));
}

/** A table of alarms with Acknowledge and Clear buttons; `reload` runs after a change. */
function alarmTable(items: Json[], reload: () => Promise<void>, showDevice: boolean): HTMLElement {
  if (!items.length) return h("p", { class: "muted" }, "No alarms.");
  const act = (alarm: Json, what: "ack" | "clear", label: string) =>
    h("button", { type: "button", class: "secondary", "data-action": what, "aria-label": `${label}: ${alarm.rule_name}`, onclick: async (e: Event) => {
      const done = await busy(e.currentTarget as HTMLButtonElement, () => call("POST", `/alarms/${alarm.id}/${what}`, {}));
      if (done) flash(`Alarm ${alarm.rule_name} ${what === "ack" ? "acknowledged" : "cleared"}.`, "ok");
      await reload().catch(showError);
    } }, label);
  return h("div", { class: "table-wrap" }, h("table", { class: "alarms" },
    h("thead", {}, h("tr", {}, h("th", {}, "Severity"), h("th", {}, "Rule"), showDevice ? h("th", {}, "Device") : null,
      h("th", {}, "State"), h("th", {}, "Value"), h("th", {}, "Raised"), h("th", {}, "Actions"))),
    h("tbody", {}, ...items.map((a) => h("tr", { "data-alarm": a.id, "data-status": a.status, "data-acknowledged": String(a.acknowledged) },
      h("td", {}, h("span", { class: `sev ${a.severity}` }, a.severity)),
      h("td", {}, a.rule_name),
      showDevice ? h("td", {}, h("a", { href: `#/device/${a.device_id}` }, a.device_name ?? a.device_id)) : null,
      h("td", { class: "state" }, `${a.status}${a.acknowledged ? ", acknowledged" : ""}`),
      h("td", {}, `${a.metric ? `${a.metric} ` : ""}${a.last_value ?? "—"}${a.count > 1 ? ` (×${a.count})` : ""}`),
      h("td", {}, when(a.raised_at)),
      h("td", {}, a.acknowledged ? "" : act(a, "ack", "Acknowledge"), " ", a.status === "active" ? act(a, "clear", "Clear") : "")))),
  ));
}

/** The device page's alarm section: active alarms first, then recent cleared ones; live. */
export function deviceAlarms(section: HTMLElement, deviceId: string): () => void {
  const box = h("div", { id: "device-alarms" }, loading());
  section.append(box, h("p", {}, h("a", { href: `#/alarms?device_id=${deviceId}` }, "Rules and all alarms of this device")));
  const load = async () => {
    try {
      const [active, cleared] = await Promise.all([
        call("GET", `/alarms?device_id=${deviceId}&status=active&limit=50`),
        call("GET", `/alarms?device_id=${deviceId}&status=cleared&limit=20`),
      ]);
      box.replaceChildren(alarmTable([...(active.items as Json[]), ...(cleared.items as Json[]).reverse()], load, false));
    } catch (err) {
      box.replaceChildren(h("p", { class: "flash error" }, errorText(err)));
    }
  };
  return watchAlarms(deviceId, load);
}

/** The fleet's alarms with filters, and the alert rules. `query` holds `device_id` filters. */
export function alarmsPage(query: URLSearchParams): () => void {
  const deviceId = query.get("device_id") ?? "";
  const status = h("select", { name: "alarm_status" }, ...options(["", "active", "cleared"])) as HTMLSelectElement;
  status.value = query.get("status") ?? "active";
  const severity = h("select", { name: "severity" }, ...options(["", ...SEVERITIES])) as HTMLSelectElement;
  const acked = h("select", { name: "acknowledged" }, ...options(["", "false", "true"], { "": "any", false: "not acknowledged", true: "acknowledged" })) as HTMLSelectElement;
  const list = h("div", { id: "alarm-list" }, loading());
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More") as HTMLButtonElement;
  let cursor: string | null = null;
  let shown: Json[] = [];
  const filters = h("form", { class: "filters", "aria-label": "Alarm filters" }, field("Status", status), field("Severity", severity), field("Acknowledged", acked),
    h("button", { type: "submit" }, "Filter"));
  const load = async (append = false) => {
    if (!append) list.replaceChildren(loading());
    const params = new URLSearchParams({ limit: "50" });
    if (status.value) params.set("status", status.value);
    if (severity.value) params.set("severity", severity.value);
    if (acked.value) params.set("acknowledged", acked.value);
    if (deviceId) params.set("device_id", deviceId);
    if (append && cursor) params.set("cursor", cursor);
    try {
      const page = await call("GET", `/alarms?${params}`);
      shown = append ? [...shown, ...(page.items as Json[])] : (page.items as Json[]);
      cursor = page.next_cursor;
      more.hidden = !cursor;
      list.replaceChildren(alarmTable(shown, () => load(), true));
      followShown();
    } catch (err) {
      list.replaceChildren(h("p", { class: "flash error" }, errorText(err)));
    }
  };
  // Live: the `alarms` channel of each device shown (at most 20); others every 15 s.
  const refresh = throttle(() => load(), 2000);
  const watching = new Map<string, () => void>();
  const followShown = () => {
    const ids = new Set([...new Set(shown.map((a) => a.device_id as string))].slice(0, 20));
    for (const [id, stop] of watching) if (!ids.has(id)) { stop(); watching.delete(id); }
    for (const id of ids) if (!watching.has(id)) watching.set(id, watchAlarms(id, async () => refresh.run()));
  };
  filters.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  more.addEventListener("click", () => busy(more, () => load(true)));
  const rules = h("section", { "aria-labelledby": "rules-title" }, h("h2", { id: "rules-title" }, "Alert rules"));
  mount(h("h1", {}, "Alarms"), deviceId ? h("p", { class: "muted" }, "Alarms of one device. ", h("a", { href: "#/alarms" }, "Show the whole fleet")) : "",
    h("section", { "aria-label": "Alarms" }, filters, list, more), rules);
  load();
  const stopRules = rulesEditor(rules, deviceId);
  const timer = window.setInterval(() => { if (!document.hidden && !cursor) load().catch(() => undefined); }, 15_000);
  return () => {
    window.clearInterval(timer);
    refresh.stop();
    for (const stop of watching.values()) stop();
    stopRules();
  };
}

type FieldSpec = [name: string, kind: "text" | "number" | "op", required: boolean, hint?: string];
const CONDITIONS: Record<string, FieldSpec[]> = {
  threshold: [["metric", "text", true], ["op", "op", true], ["value", "number", true], ["for_s", "number", false, "held for seconds"], ["hysteresis", "number", false]],
  no_data: [["after_s", "number", true, "seconds, at least 10"], ["metric", "text", false]],
  anomaly: [["metric", "text", true], ["k", "number", true, "z-score"], ["window", "number", true, "values"], ["min_samples", "number", false]],
  rate: [["window_s", "number", true], ["n", "number", false, "readings"], ["delta", "number", false], ["metric", "text", false]],
};

function conditionText(c: Json): string {
  if (c.type === "threshold") return `${c.metric} ${c.op} ${c.value}${c.for_s ? ` for ${c.for_s} s` : ""}`;
  if (c.type === "no_data") return `no data${c.metric ? ` of ${c.metric}` : ""} for ${c.after_s} s`;
  if (c.type === "anomaly") return `${c.metric} |z| > ${c.k} over ~${c.window} values`;
  return c.n ? `more than ${c.n} readings in ${c.window_s} s` : `${c.metric} changes by more than ${c.delta} in ${c.window_s} s`;
}

/** The rules list and the create/edit form (scope: a product, folder or device). */
function rulesEditor(section: HTMLElement, deviceId: string): () => void {
  const list = h("div", { id: "rule-list" }, loading());
  const name = h("input", { name: "rule_name", required: true, maxlength: 100 }) as HTMLInputElement;
  const scopeType = h("select", { name: "scope_type" }, ...options(["device", "folder", "product"])) as HTMLSelectElement;
  const scopeId = h("select", { name: "scope_id", required: true }) as HTMLSelectElement;
  const sev = h("select", { name: "rule_severity" }, ...options(SEVERITIES)) as HTMLSelectElement;
  sev.value = "major";
  const enabled = h("input", { type: "checkbox", name: "enabled", checked: true }) as HTMLInputElement;
  const ctype = h("select", { name: "condition_type" }, ...options(Object.keys(CONDITIONS))) as HTMLSelectElement;
  const condBox = h("div", { class: "params" });
  const emails = h("input", { name: "notify_emails", placeholder: "ops@example.com, …" }) as HTMLInputElement;
  const onClear = h("input", { type: "checkbox", name: "on_clear", checked: true }) as HTMLInputElement;
  const onAck = h("input", { type: "checkbox", name: "on_ack" }) as HTMLInputElement;
  const title = h("h3", { id: "rule-form-title" }, "New rule");
  const submit = h("button", { type: "submit", id: "save-rule" }, "Create rule") as HTMLButtonElement;
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel edit") as HTMLButtonElement;
  const webhookNote = h("p", { class: "muted", hidden: true }, "This rule's webhooks are kept (edit them through the API).");
  let editing: Json | null = null;
  const scopes: Record<string, Json[]> = { device: [], folder: [], product: [] };

  const renderCondition = (values: Json = {}) => {
    condBox.replaceChildren(...CONDITIONS[ctype.value].map(([n, kind, required, hint]) => {
      const input = kind === "op"
        ? h("select", { name: `cond-${n}` }, ...options([">", ">=", "<", "<=", "==", "!="]))
        : h("input", { name: `cond-${n}`, type: kind, step: "any", required, "data-kind": kind });
      (input as HTMLInputElement).value = values[n] === undefined || values[n] === null ? (kind === "op" ? ">" : "") : String(values[n]);
      return field(`${n}${hint ? ` (${hint})` : ""}${required ? "" : ", optional"}`, input);
    }));
  };
  const renderScopes = (selected = "") => {
    const items = scopes[scopeType.value];
    scopeId.replaceChildren(...items.map((s) => h("option", { value: s.id }, s.name)));
    if (selected) scopeId.value = selected;
    else if (scopeType.value === "device" && deviceId) scopeId.value = deviceId;
  };
  ctype.addEventListener("change", () => renderCondition());
  scopeType.addEventListener("change", () => renderScopes());
  renderCondition();

  const reset = () => {
    editing = null;
    form.reset();
    sev.value = "major";
    scopeType.disabled = scopeId.disabled = false;
    title.textContent = "New rule";
    submit.textContent = "Create rule";
    cancel.hidden = webhookNote.hidden = true;
    renderScopes();
    renderCondition();
  };
  const edit = (rule: Json) => {
    editing = rule;
    title.textContent = `Edit rule ${rule.name}`;
    submit.textContent = "Save rule";
    cancel.hidden = false;
    webhookNote.hidden = !rule.notify.webhooks.length;
    name.value = rule.name;
    scopeType.value = rule.scope.type;
    renderScopes(rule.scope.id);
    scopeType.disabled = scopeId.disabled = true; // a rule's scope cannot change
    sev.value = rule.severity;
    enabled.checked = rule.enabled;
    ctype.value = rule.condition.type;
    renderCondition(rule.condition);
    emails.value = rule.notify.emails.join(", ");
    onClear.checked = rule.notify.on_clear;
    onAck.checked = rule.notify.on_ack;
    name.focus();
  };

  const form = h("form", { class: "card", "aria-labelledby": "rule-form-title" }, title,
    field("Name", name), h("div", { class: "row" }, field("Applies to", scopeType), field("Which", scopeId)),
    h("div", { class: "row" }, field("Severity", sev), field("Condition", ctype)), condBox,
    field("Notify emails (comma separated)", emails),
    h("div", { class: "row checks" }, field("Enabled", enabled), field("Notify on clear", onClear), field("Notify on acknowledge", onAck)),
    webhookNote, h("div", { class: "row" }, submit, cancel)) as HTMLFormElement;
  cancel.addEventListener("click", reset);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(submit, async () => {
      const condition: Json = { type: ctype.value };
      for (const input of condBox.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input, select")) {
        const key = input.name.replace(/^cond-/, "");
        if (input.value === "") continue;
        condition[key] = input.dataset.kind === "number" ? Number(input.value) : input.value;
      }
      const body: Json = { name: name.value, severity: sev.value, enabled: enabled.checked, condition };
      const notify = { emails: emails.value.split(",").map((x) => x.trim()).filter(Boolean), on_clear: onClear.checked, on_ack: onAck.checked };
      if (editing) {
        // Notify replaces the whole setting, webhooks included: leave it when webhooks exist.
        if (!editing.notify.webhooks.length) body.notify = { ...notify, min_interval_s: editing.notify.min_interval_s };
        await call("PATCH", `/alert-rules/${editing.id}`, body);
        flash(`Rule ${name.value} saved.`, "ok");
      } else {
        await call("POST", "/alert-rules", { ...body, notify, scope: { type: scopeType.value, id: scopeId.value } });
        flash(`Rule ${name.value} created.`, "ok");
      }
      reset();
      await load();
    });
  });

  const scopeName = (s: Json) => scopes[s.type].find((x) => x.id === s.id)?.name ?? s.id;
  const load = async () => {
    const params = deviceId ? `&scope_type=device&scope_id=${q(deviceId)}` : "";
    try {
      const page = await call("GET", `/alert-rules?limit=200${params}`);
      const items = page.items as Json[];
      list.replaceChildren(items.length ? h("ul", { class: "rules" }, ...items.map((r) => h("li", { "data-rule": r.id },
        h("span", { class: `sev ${r.severity}` }, r.severity), " ", h("strong", {}, r.name), r.enabled ? "" : h("em", {}, " (disabled)"),
        h("span", { class: "muted" }, ` · ${r.scope.type} ${scopeName(r.scope)} · ${conditionText(r.condition)}`), " ",
        h("span", { class: "actions" },
          h("button", { type: "button", class: "link", "aria-label": `Edit rule ${r.name}`, onclick: () => edit(r) }, "edit"), " ",
          h("button", { type: "button", class: "link", "aria-label": `${r.enabled ? "Disable" : "Enable"} rule ${r.name}`, onclick: async (e: Event) => {
            await busy(e.currentTarget as HTMLButtonElement, () => call("PATCH", `/alert-rules/${r.id}`, { enabled: !r.enabled }));
            await load();
          } }, r.enabled ? "disable" : "enable"), " ",
          h("button", { type: "button", class: "link", "aria-label": `Delete rule ${r.name}`, onclick: async (e: Event) => {
            if (!window.confirm(`Delete rule ${r.name}? Its active alarms are cleared.`)) return;
            await busy(e.currentTarget as HTMLButtonElement, () => call("DELETE", `/alert-rules/${r.id}`));
            await load();
          } }, "delete")))))
        : h("p", { class: "muted" }, "No rules yet."));
    } catch (err) {
      list.replaceChildren(h("p", { class: "flash error" }, errorText(err)));
    }
  };
  section.append(list, form);
  (async () => {
    const [devices, folders, products] = await Promise.all([call("GET", "/devices?limit=200"), call("GET", "/folders?limit=200"), call("GET", "/products?limit=200")]);
    scopes.device = devices.items;
    scopes.folder = folders.items;
    scopes.product = products.items;
    if (deviceId && !scopes.device.some((d) => d.id === deviceId)) {
      scopes.device.push(await call("GET", `/devices/${q(deviceId)}`));
    }
    renderScopes();
    await load();
  })().catch(showError);
  return () => undefined;
}
