import { add, compare, fee, multiply, onGrid, percentChange, round, stepBy } from "./decimal";

describe("decimal", () => {
  it("adds and multiplies exactly", () => {
    expect(add("0.1", "0.2")).toBe("0.3");
    expect(multiply("0.001", "65000.5")).toBe("65.0005");
    expect(compare("1.10", "1.1")).toBe(0);
    expect(compare("-2", "1")).toBe(-1);
  });

  it("steps by tick and lot, snapping onto the grid", () => {
    expect(stepBy("187.31", "0.01", 1)).toBe("187.32");
    expect(stepBy("187.31", "0.01", -1)).toBe("187.30");
    expect(stepBy("187.315", "0.01", -1)).toBe("187.31");
    expect(stepBy("187.315", "0.01", 1)).toBe("187.32");
    expect(stepBy("0.001", "0.001", -1)).toBe("0.001");
    expect(stepBy("", "1", 1)).toBe("1");
    expect(stepBy("9", "10", 1)).toBe("10");
  });

  it("checks the grid and rounds for display", () => {
    expect(onGrid("0.003", "0.001")).toBe(true);
    expect(onGrid("0.0035", "0.001")).toBe(false);
    expect(onGrid("0", "1")).toBe(false);
    expect(round("1.005", 2)).toBe("1.01");
    expect(round("-1.005", 2)).toBe("-1.01");
    expect(round("3", 2)).toBe("3.00");
    expect(percentChange("100", "101.5")).toBe("1.50");
    expect(percentChange("0", "1")).toBeNull();
  });

  it("estimates the fee as bps of the notional with a minimum", () => {
    expect(fee("43000.50", "10", "0")).toBe("43.000500");
    expect(fee("340", "0.5", "1")).toBe("1");
    expect(fee("0", "10", "5")).toBe("0");
  });
});
