// Grouped bar charts as standalone SVG, for bench/REPORT.md: one group of bars per label, one bar
// per series (wasmvisor, QEMU...), a value above each bar, a labelled y axis from zero with round
// ticks, and optionally a dashed target line.

export interface Series {
  name: string;
  color: string;
}

export interface BarGroup {
  label: string;
  /** One value per series; null draws no bar (e.g. no QEMU figure). */
  values: (number | null)[];
}

export interface BarChart {
  title: string;
  /** Y axis label, e.g. "MIPS (higher is better)". */
  axis: string;
  series: Series[];
  groups: BarGroup[];
  target?: { value: number; label: string };
}

export const COLORS = { wasmvisor: "#3467a8", interpreter: "#9bb7da", qemu: "#d08a2e", container: "#4e9a52" } as const;

const HEIGHT = 320;
const MARGIN = { left: 64, right: 24, top: 56, bottom: 44 };
// Rough advance widths of 11 px and bold 14 px sans-serif: size groups and the plot to their text.
const CHAR_WIDTH = 6.5;
const TITLE_CHAR_WIDTH = 9.5;
const TARGET_COLOR = "#c0392b";
const TARGET_STYLE = `stroke="${TARGET_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"`;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Three significant digits, no exponent: 1234, 123, 12.3, 1.23, 0.123. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

/** Tick step of 1, 2 or 5 times a power of ten giving at most `maxTicks` intervals up to `max`. */
export function tickStep(max: number, maxTicks = 5): number {
  const raw = max / maxTicks;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
}

export function barChart(c: BarChart): string {
  const values = c.groups.flatMap((g) => g.values).filter((v): v is number => v !== null);
  const top = Math.max(...values, c.target?.value ?? 0) * 1.12 || 1;
  const step = tickStep(top);
  const yMax = Math.ceil(top / step) * step;
  const tickDigits = Math.max(0, -Math.floor(Math.log10(step)));
  // Wide enough for the group's label, and for each bar's value label side by side.
  const valueWidth = Math.max(...values.map((v) => formatValue(v).length)) * CHAR_WIDTH + 4;
  const groupWidth = Math.max(96, ...c.groups.map((g) => g.label.length * CHAR_WIDTH + 16), (c.series.length * valueWidth) / 0.7);
  const plotW = Math.max(groupWidth * c.groups.length, c.title.length * TITLE_CHAR_WIDTH - MARGIN.left);
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const width = MARGIN.left + plotW + MARGIN.right;
  const x0 = MARGIN.left + (plotW - groupWidth * c.groups.length) / 2, y0 = MARGIN.top + plotH;
  const y = (v: number) => y0 - (v / yMax) * plotH;
  const r = (n: number) => Math.round(n * 10) / 10;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${r(width)}" height="${HEIGHT}" viewBox="0 0 ${r(width)} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${MARGIN.left}" y="20" font-size="14" font-weight="bold">${escapeXml(c.title)}</text>`,
  ];
  // Legend under the title: the series, then the target's line.
  let lx = MARGIN.left;
  for (const s of c.series) {
    out.push(`<rect x="${r(lx)}" y="30" width="10" height="10" fill="${s.color}"/>`,
      `<text x="${r(lx + 14)}" y="39">${escapeXml(s.name)}</text>`);
    lx += 14 + s.name.length * CHAR_WIDTH + 16;
  }
  if (c.target) {
    out.push(`<line x1="${r(lx)}" x2="${r(lx + 18)}" y1="35" y2="35" ${TARGET_STYLE}/>`,
      `<text x="${r(lx + 22)}" y="39" fill="${TARGET_COLOR}">${escapeXml(c.target.label)}</text>`);
  }
  // Y axis: grid lines, tick labels, title.
  const plotX1 = r(MARGIN.left + plotW);
  for (let i = 0; i * step <= yMax + step / 2; i++) {
    const ty = r(y(i * step));
    out.push(`<line x1="${MARGIN.left}" x2="${plotX1}" y1="${ty}" y2="${ty}" stroke="${i === 0 ? "#333" : "#e3e3e3"}"/>`,
      `<text x="${MARGIN.left - 6}" y="${r(ty + 4)}" text-anchor="end">${(i * step).toFixed(tickDigits)}</text>`);
  }
  out.push(`<line x1="${MARGIN.left}" x2="${MARGIN.left}" y1="${MARGIN.top}" y2="${y0}" stroke="#333"/>`,
    `<text transform="translate(14 ${r(MARGIN.top + plotH / 2)}) rotate(-90)" text-anchor="middle">${escapeXml(c.axis)}</text>`);
  if (c.target) {
    const ty = r(y(c.target.value));
    out.push(`<line class="target" x1="${MARGIN.left}" x2="${plotX1}" y1="${ty}" y2="${ty}" ${TARGET_STYLE}/>`);
  }
  // Bars with their values, group labels under the axis.
  const barW = (groupWidth * 0.7) / c.series.length;
  c.groups.forEach((g, gi) => {
    const gx = x0 + gi * groupWidth;
    g.values.forEach((v, si) => {
      if (v === null) return;
      const bx = gx + groupWidth * 0.15 + si * barW;
      const name = `${c.series[si].name}, ${g.label}: ${formatValue(v)}`;
      out.push(`<rect class="bar" x="${r(bx)}" y="${r(y(v))}" width="${r(barW - 2)}" height="${r(y0 - y(v))}" fill="${c.series[si].color}"><title>${escapeXml(name)}</title></rect>`,
        `<text x="${r(bx + (barW - 2) / 2)}" y="${r(y(v) - 4)}" text-anchor="middle">${formatValue(v)}</text>`);
    });
    out.push(`<text x="${r(gx + groupWidth / 2)}" y="${y0 + 18}" text-anchor="middle">${escapeXml(g.label)}</text>`);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
