import { expect } from "vitest";
import { isQuantInputError, type QuantInputError } from "../src/quant/errors.ts";

/** Runs fn and returns the QuantInputError it must throw (fails the test on anything else). */
export function expectThrowsQuant(fn: () => unknown): QuantInputError {
  try {
    fn();
  } catch (e) {
    expect(isQuantInputError(e)).toBe(true);
    return e as QuantInputError;
  }
  throw new Error("expected a QuantInputError");
}
