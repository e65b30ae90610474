/** How the lab writes numbers for people: one place, so every panel reads the same way. */

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** 260032 -> "260,032". */
export function formatCount(n: number): string {
  return integer.format(n);
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** 1044992 -> "1020.5 KiB"; exact counts go in a title attribute (formatCount). */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${BYTE_UNITS[unit]}`;
}

/** A byte limit in MiB, as WebGPU limits are usually quoted. */
export function formatMiB(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return `${mib >= 100 ? integer.format(mib) : mib.toFixed(mib >= 1 ? 1 : 3)} MiB`;
}

/** [64, 172] -> "64 × 172", [4300000000] -> "4,300,000,000"; a 0-d tensor is "scalar". */
export function formatShape(shape: readonly number[]): string {
  return shape.length === 0 ? "scalar" : shape.map(formatCount).join(" × ");
}

/** A share of the model given as a fraction (0..1) -> "12.60 %". */
export function formatShare(fraction: number): string {
  const percent = fraction * 100;
  return `${percent.toFixed(percent > 0 && percent < 0.01 ? 4 : 2)} %`;
}

/**
 * A tensor value, written with the fewest digits that still read back as the same float32 (at most 9),
 * so what the lab shows is exact for F32 data and never longer than it needs to be.
 */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "−Inf";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  const abs = Math.abs(v);
  const exponential = abs >= 1e6 || abs < 1e-4;
  const target = Math.fround(v);
  let text = "";
  for (let digits = 1; digits <= 9; digits++) {
    text = exponential ? v.toExponential(digits - 1) : String(Number(v.toPrecision(digits)));
    if (Math.fround(Number(text)) === target) break;
  }
  return text;
}

/**
 * A measured quantity (MSE, SNR, cosine...) to `digits` significant digits: 0.000123 -> "1.230e-4",
 * 18.234 -> "18.23"; exponents below 1e-3 and from 1e6. NaN is "—" (nothing to measure), infinities "∞".
 */
export function formatMeasure(v: number, digits = 4): string {
  if (Number.isNaN(v)) return "—";
  if (!Number.isFinite(v)) return v > 0 ? "∞" : "−∞";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs < 1e-3 || abs >= 1e6) return v.toExponential(digits - 1).replace("e+", "e");
  return v.toPrecision(digits);
}

/** A time left or taken, clock style (no words, so no translation): 12_300 -> "0:12", 65_000 -> "1:05", 3_725_000 -> "1:02:05". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "—";
  const seconds = Math.round(ms / 1000);
  const ss = String(seconds % 60).padStart(2, "0");
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}:${ss}`;
  return `${Math.floor(minutes / 60)}:${String(minutes % 60).padStart(2, "0")}:${ss}`;
}

/** Bits per weight, to at most 4 decimals without trailing zeros: 4.5 -> "4.5", 4.00390625 -> "4.0039". */
export function formatBitsPerWeight(bits: number): string {
  return String(Number(bits.toFixed(4)));
}
