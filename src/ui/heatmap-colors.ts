/**
 * Colour maps of the heatmaps: perceptually uniform sequential maps for magnitudes and a diverging map for
 * signed values (d3-scale-chromatic's, sampled into 256-entry tables once), and the colour of non-finite
 * cells, which no map uses.
 */
import { interpolateCividis, interpolateInferno, interpolateRdBu, interpolateViridis } from "d3-scale-chromatic";

export type ColourMapName = "viridis" | "inferno" | "cividis";

const SEQUENTIAL: Record<ColourMapName, (t: number) => string> = {
  viridis: interpolateViridis,
  inferno: interpolateInferno,
  cividis: interpolateCividis,
};

/** Non-finite cells: bright magenta, absent from every map. */
export const NON_FINITE_RGB: readonly [number, number, number] = [255, 0, 255];

function table(interpolate: (t: number) => string): Uint8ClampedArray {
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    out.set(parseColour(interpolate(i / 255)), i * 3);
  }
  return out;
}

/** The maps give "#rrggbb" (sampled tables) or "rgb(r, g, b)" (interpolated ones). */
function parseColour(c: string): [number, number, number] {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(c);
  if (hex) return [parseInt(hex[1]!, 16), parseInt(hex[2]!, 16), parseInt(hex[3]!, 16)];
  const rgb = /^rgb\((\d+), ?(\d+), ?(\d+)\)$/.exec(c);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  throw new Error(`unexpected colour ${c}`);
}

const tables = new Map<string, Uint8ClampedArray>();

/** The 256-colour table of a map; signed values use blue (negative) to red (positive). */
export function colourTable(name: ColourMapName, signed: boolean): Uint8ClampedArray {
  const key = signed ? "rdbu" : name;
  let t = tables.get(key);
  if (!t) {
    // RdBu runs red to blue: reversed so that positive is red.
    t = table(signed ? (x) => interpolateRdBu(1 - x) : SEQUENTIAL[name]);
    tables.set(key, t);
  }
  return t;
}

/** A CSS gradient of a table, for the legend. */
export function cssGradient(t: Uint8ClampedArray): string {
  const stops: string[] = [];
  for (let i = 0; i <= 16; i++) {
    const k = Math.round((i / 16) * 255) * 3;
    stops.push(`rgb(${t[k]}, ${t[k + 1]}, ${t[k + 2]}) ${(i / 16) * 100}%`);
  }
  return `linear-gradient(to right, ${stops.join(", ")})`;
}
