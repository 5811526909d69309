// Live updates of a device's latest values. Until the WebSocket stream (issue 17) lands this
// polls the latest-values API once a second; the page only sees `watchLatest`.
import { call, type Json } from "./api";

export type Stop = () => void;

export function watchLatest(deviceId: string, onLatest: (latest: Json) => void, onError: (e: unknown) => void): Stop {
  let stopped = false;
  let timer: number | undefined;
  const tick = async () => {
    try {
      const latest = await call(`GET`, `/devices/${deviceId}/readings/latest`);
      if (!stopped) onLatest(latest);
    } catch (err) {
      if (!stopped) onError(err);
    }
    if (!stopped) timer = window.setTimeout(tick, 1000);
  };
  tick();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

/** Poll a command until it reaches a final state (WebSocket events replace this later). */
export function watchCommand(deviceId: string, commandId: string, onState: (cmd: Json) => void): Stop {
  let stopped = false;
  const final = new Set(["successful", "failed", "expired", "cancelled", "timeout"]);
  const tick = async () => {
    if (stopped) return;
    try {
      const cmd = await call("GET", `/devices/${deviceId}/commands/${commandId}`);
      onState(cmd);
      if (final.has(cmd.state)) return;
    } catch {
      /* retried below */
    }
    window.setTimeout(tick, 700);
  };
  tick();
  return () => {
    stopped = true;
  };
}
