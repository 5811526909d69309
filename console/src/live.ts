// Live updates over one WebSocket (WS /api/v1/ws, README "Live streams"): the first message
// authenticates with the user's Firebase ID token, then each page subscribes to the channels
// it shows. The socket reconnects with backoff; while it is down each watcher polls the HTTP
// API instead, and after every (re)subscription it fetches once to catch up on what it missed.
// `window.sensorhubLive` exposes the state and event counts (the browser tests assert on them).
import { call, type Json } from "./api";

export type Stop = () => void;

declare global {
  interface Window {
    sensorhubLive?: { state: "connecting" | "live" | "polling"; events: number; byChannel: Record<string, number>; subscriptions: number };
  }
}

interface Sub {
  id: string;
  channel: string;
  scope: Record<string, string>;
  onEvent: (data: Json) => void;
  onSubscribed: () => void;
  onEnded: (code: string) => void;
}

const MESSAGES_PER_S = 10; // the server allows WS_MESSAGES_PER_S (20 by default)
const BACKOFF_MAX_MS = 30_000;

class LiveClient {
  private ws: WebSocket | null = null;
  private authed = false;
  private subs = new Map<string, Sub>();
  private next = 0;
  private attempt = 0;
  private reconnectTimer: number | undefined;
  private outbox: string[] = [];
  private sent: number[] = [];
  private pumpTimer: number | undefined;
  private listeners = new Set<(live: boolean) => void>();
  private token: (fresh: boolean) => Promise<string | null> = async () => null;

  constructor() {
    window.sensorhubLive = { state: "polling", events: 0, byChannel: {}, subscriptions: 0 };
  }

  useToken(source: (fresh: boolean) => Promise<string | null>): void {
    this.token = source;
  }

  get live(): boolean {
    return this.authed;
  }

  onConnection(listener: (live: boolean) => void): Stop {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  subscribe(channel: string, scope: Record<string, string>, handlers: Omit<Sub, "id" | "channel" | "scope">): Stop {
    const sub: Sub = { id: `s${++this.next}`, channel, scope, ...handlers };
    this.subs.set(sub.id, sub);
    this.count();
    if (this.authed) this.sendSubscribe(sub);
    else this.connect();
    return () => {
      if (!this.subs.delete(sub.id)) return;
      this.count();
      if (this.authed) this.send({ type: "unsubscribe", id: sub.id });
    };
  }

  /** Close the socket (sign-out); subscriptions made later open a new one. */
  close(): void {
    this.subs.clear();
    window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const ws = this.ws;
    this.ws = null;
    this.setAuthed(false);
    ws?.close(1000);
  }

  private count(): void {
    window.sensorhubLive!.subscriptions = this.subs.size;
  }

  private connect(): void {
    if (this.ws || this.reconnectTimer !== undefined || !this.subs.size) return;
    window.sensorhubLive!.state = "connecting";
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/v1/ws`);
    this.ws = ws;
    this.outbox = [];
    ws.onopen = async () => {
      const token = await this.token(false).catch(() => null);
      if (this.ws !== ws) return;
      if (!token) return ws.close(1000);
      ws.send(JSON.stringify({ type: "auth", token }));
    };
    ws.onmessage = (msg) => this.receive(ws, msg);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.setAuthed(false);
      if (!this.subs.size) return;
      // Backoff: 0.5 s, 1 s, 2 s ... up to 30 s, with jitter; a 4429 (too many) waits longer.
      const base = Math.min(BACKOFF_MAX_MS, 500 * 2 ** this.attempt++) * (ev.code === 4429 ? 4 : 1);
      this.reconnectTimer = window.setTimeout(() => {
        this.reconnectTimer = undefined;
        this.connect();
      }, Math.min(BACKOFF_MAX_MS, base) * (0.75 + Math.random() / 2));
    };
    ws.onerror = () => undefined; // onclose follows and reconnects
  }

  private async receive(ws: WebSocket, msg: MessageEvent): Promise<void> {
    let m: Json;
    try {
      m = JSON.parse(String(msg.data));
    } catch {
      return;
    }
    if (m.type === "authenticated") {
      if (this.authed) return; // a re-authentication after `reauth`
      this.attempt = 0;
      this.setAuthed(true);
      for (const sub of this.subs.values()) this.sendSubscribe(sub);
    } else if (m.type === "reauth") {
      const token = await this.token(true).catch(() => null);
      if (token && this.ws === ws) this.send({ type: "auth", token });
    } else if (m.type === "subscribed") {
      this.subs.get(m.id)?.onSubscribed();
    } else if (m.type === "event") {
      const counts = window.sensorhubLive!;
      counts.events++;
      counts.byChannel[m.channel] = (counts.byChannel[m.channel] ?? 0) + 1;
      this.subs.get(m.id)?.onEvent(m.data ?? {});
    } else if (m.type === "error" && m.id) {
      const sub = this.subs.get(m.id);
      if (sub && m.code !== "duplicate_id" && m.code !== "unknown_id") {
        this.subs.delete(m.id);
        this.count();
        sub.onEnded(m.code);
      }
    } else if (m.type === "resumed") {
      for (const sub of this.subs.values()) sub.onSubscribed(); // catch up on what Redis lost
    }
  }

  private setAuthed(live: boolean): void {
    if (this.authed === live) return;
    this.authed = live;
    window.sensorhubLive!.state = live ? "live" : "polling";
    for (const listener of this.listeners) listener(live);
  }

  private sendSubscribe(sub: Sub): void {
    this.send({ type: "subscribe", id: sub.id, channel: sub.channel, ...sub.scope });
  }

  /** Queue a message; the queue drains at most MESSAGES_PER_S a second (the server's limit). */
  private send(message: Json): void {
    this.outbox.push(JSON.stringify(message));
    this.pump();
  }

  private pump(): void {
    if (this.pumpTimer !== undefined) return;
    const now = Date.now();
    this.sent = this.sent.filter((t) => now - t < 1000);
    while (this.outbox.length && this.sent.length < MESSAGES_PER_S) {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN) {
        this.outbox = [];
        return;
      }
      ws.send(this.outbox.shift()!);
      this.sent.push(now);
    }
    if (this.outbox.length) {
      this.pumpTimer = window.setTimeout(() => {
        this.pumpTimer = undefined;
        this.pump();
      }, 1000 - (now - this.sent[0]) + 5);
    }
  }
}

export const live = new LiveClient();

/**
 * Follow `channel` live; `poll` is run once after each (re)subscription to catch up, and every
 * `pollMs` while the socket is down (or the subscription was refused).
 */
export function follow(channel: string, scope: Record<string, string>, onEvent: (data: Json) => void, poll: () => Promise<void>, pollMs: number): Stop {
  let stopped = false;
  let subscribed = false;
  let timer: number | undefined;
  const runPoll = () => {
    poll().catch(() => undefined);
  };
  const schedule = () => {
    window.clearTimeout(timer);
    if (stopped || subscribed) return;
    timer = window.setTimeout(() => {
      runPoll();
      schedule();
    }, pollMs);
  };
  const unsubscribe = live.subscribe(channel, scope, {
    onEvent: (data) => !stopped && onEvent(data),
    onSubscribed: () => {
      subscribed = true;
      window.clearTimeout(timer);
      if (!stopped) runPoll();
    },
    onEnded: () => {
      subscribed = false;
      schedule();
    },
  });
  const offConnection = live.onConnection((up) => {
    if (!up) {
      subscribed = false;
      schedule();
    }
  });
  schedule();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
    unsubscribe();
    offConnection();
  };
}

/** A device's latest values: fetched once, then kept current by `device.latest` events. */
export function watchLatest(deviceId: string, onLatest: (latest: Json) => void, onError: (e: unknown) => void): Stop {
  let current: Json = { metrics: {}, ts: null };
  const fetchLatest = async () => {
    try {
      current = await call("GET", `/devices/${deviceId}/readings/latest`);
      onLatest(current);
    } catch (err) {
      onError(err);
    }
  };
  fetchLatest();
  return follow("device.latest", { device_id: deviceId }, (data) => {
    const metrics = { ...(current.metrics ?? {}) } as Record<string, Json>;
    let ts: string | null = current.ts ?? null;
    for (const [name, v] of Object.entries((data.values ?? {}) as Record<string, Json>)) {
      if (metrics[name]?.ts && Date.parse(metrics[name].ts) > Date.parse(v.ts)) continue;
      metrics[name] = { value: v.v, ts: v.ts };
      if (!ts || Date.parse(v.ts) > Date.parse(ts)) ts = v.ts;
    }
    current = { ...current, metrics, ts };
    onLatest(current);
  }, fetchLatest, 1000);
}

/** A device's status: `device.status` events, or its status API while the socket is down. */
export function watchStatus(deviceId: string, onStatus: (status: string) => void, poll: () => Promise<void>): Stop {
  return follow("device.status", { device_id: deviceId }, (data) => onStatus(String(data.status)), poll, 5000);
}

/** Status changes of the devices below a folder (`folder.devices`). */
export function watchFolder(folderId: string, onStatus: (deviceId: string, status: string) => void, poll: () => Promise<void>): Stop {
  return follow("folder.devices", { folder_id: folderId }, (data) => onStatus(String(data.device_id), String(data.status)), poll, 10_000);
}

/** A device's alarm changes (`alarms`): `onChange` reloads what the page shows. */
export function watchAlarms(deviceId: string, onChange: () => Promise<void>): Stop {
  return follow("alarms", { device_id: deviceId }, () => void onChange().catch(() => undefined), onChange, 10_000);
}

const FINAL = new Set(["successful", "failed", "expired", "cancelled", "timeout"]);

/** A command's state, from `device.commands` events (or polled while the socket is down). */
export function watchCommand(deviceId: string, commandId: string, onState: (cmd: Json) => void): Stop {
  let stop: Stop = () => undefined;
  let done = false;
  const seen = (cmd: Json) => {
    if (done) return;
    onState(cmd);
    if (FINAL.has(cmd.state)) {
      done = true;
      stop();
    }
  };
  stop = follow("device.commands", { device_id: deviceId }, (data) => {
    if (data.command_id === commandId) seen({ ...data, id: commandId });
  }, async () => seen(await call("GET", `/devices/${deviceId}/commands/${commandId}`)), 1000);
  return () => {
    done = true;
    stop();
  };
}
