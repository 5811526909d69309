// The history chart: raw readings when the range is short, aggregates when it is long; the
// interval follows the zoom (drag to zoom, double-click to reset). The data the chart was
// last given is exposed as `window.sensorhubChart` (the browser tests assert on it).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { call, type Json } from "./api";

const RAW_MAX_SPAN_MS = 2 * 3600_000;
const INTERVALS: [number, string][] = [[60_000, "1m"], [300_000, "5m"], [900_000, "15m"], [3600_000, "1h"], [21_600_000, "6h"], [86_400_000, "1d"]];
const POINTS = 240;

declare global {
  interface Window {
    sensorhubChart?: { mode: string; interval: string | null; x: number[]; series: Record<string, (number | null)[]> };
  }
}

export class HistoryChart {
  private plot: uPlot | null = null;
  private range: [number, number] | null = null;
  private busy = false;
  private again = false;

  constructor(private box: HTMLElement, private deviceId: string, private tz: () => string) {
    this.reload();
  }

  destroy(): void {
    this.plot?.destroy();
  }

  reload(): void {
    this.load().catch((err) => this.box.replaceChildren(Object.assign(document.createElement("p"), { className: "flash error", textContent: String(err.message ?? err) })));
  }

  private async load(): Promise<void> {
    if (this.busy) {
      this.again = true; // load once more when the current one ends
      return;
    }
    this.busy = true;
    this.box.setAttribute("aria-busy", "true");
    try {
      const [start, end] = this.range ?? [Date.now() - 3600_000, Date.now() + 60_000];
      const span = end - start;
      const params = new URLSearchParams({ start: new Date(start).toISOString(), end: new Date(end).toISOString() });
      let x: number[] = [];
      const series: Record<string, (number | null)[]> = {};
      let interval: string | null = null;
      if (span <= RAW_MAX_SPAN_MS) {
        params.set("order", "asc");
        params.set("limit", "1000");
        const page = await call("GET", `/devices/${this.deviceId}/readings?${params}`);
        const items = page.items as Json[];
        x = items.map((r) => Date.parse(r.ts) / 1000);
        const names = [...new Set(items.flatMap((r) => Object.keys(r.metrics)))];
        for (const n of names) series[n] = items.map((r) => (typeof r.metrics[n] === "number" ? r.metrics[n] : null));
      } else {
        interval = (INTERVALS.find(([ms]) => span / ms <= POINTS) ?? INTERVALS[INTERVALS.length - 1])[1];
        params.set("interval", interval);
        params.set("agg", "avg");
        params.set("tz", this.tz());
        const agg = await call("GET", `/devices/${this.deviceId}/readings/aggregate?${params}`);
        const buckets = agg.buckets as Json[];
        x = buckets.map((b) => Date.parse(b.start) / 1000);
        for (const n of agg.metrics as string[]) series[n] = buckets.map((b) => b.values[n]?.avg ?? null);
      }
      window.sensorhubChart = { mode: interval ? "aggregate" : "raw", interval, x, series };
      this.draw(x, series, [start / 1000, end / 1000]);
    } finally {
      this.busy = false;
      this.box.removeAttribute("aria-busy");
      if (this.again) {
        this.again = false;
        this.reload();
      }
    }
  }

  private draw(x: number[], series: Record<string, (number | null)[]>, range: [number, number]): void {
    const names = Object.keys(series);
    const data = [x, ...names.map((n) => series[n])] as uPlot.AlignedData;
    const colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"];
    const width = Math.max(280, this.box.clientWidth || 600);
    this.plot?.destroy();
    this.box.replaceChildren();
    this.plot = new uPlot(
      {
        width,
        height: 260,
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), this.tz()),
        series: [{}, ...names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], spanGaps: true }))],
        scales: { x: { time: true, range: () => range } },
        cursor: { drag: { x: true, y: false } },
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width < 5) return;
              const from = u.posToVal(u.select.left, "x") * 1000;
              const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
              this.range = [from, to];
              this.reload();
            },
          ],
        },
      },
      data,
      this.box,
    );
    this.plot.over.addEventListener("dblclick", () => {
      this.range = null;
      this.reload();
    });
    if (!names.length) this.box.append(Object.assign(document.createElement("p"), { className: "muted", textContent: "No readings in this range." }));
  }
}
