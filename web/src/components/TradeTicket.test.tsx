import { screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { ApiError } from "../api/client";
import type { Instrument, Quote } from "../api/types";
import { renderWithQuery, scriptedFetch } from "../test/render";
import { errorsByField, TradeTicket } from "./TradeTicket";

const BTC: Instrument = {
  symbol: "BTC-USD",
  name: "Bitcoin / US Dollar",
  kind: "crypto",
  venue: "CRYPTO",
  base_currency: "BTC",
  quote_currency: "USD",
  tick_size: "0.01",
  lot_size: "0.00001",
  timezone: "UTC",
  open_now: true,
  tradable: true,
  fee_bps: "10",
  fee_minimum: "0",
};
const QUOTE = {
  symbol: "BTC-USD",
  bid: "43000.00",
  ask: "43000.50",
  last: "43000.25",
  bid_size: "1",
  ask_size: "1",
  last_size: "0.1",
  source_ts: null,
} as Quote;

afterEach(() => vi.unstubAllGlobals());

describe("TradeTicket", () => {
  it("offers every order type and time in force, and steps by lot and tick", async () => {
    const user = userEvent.setup();
    renderWithQuery(<TradeTicket instrument={BTC} quote={QUOTE} accountId="acc-1" />);
    const type = screen.getByLabelText("Type");
    expect([...(type as HTMLSelectElement).options].map((o) => o.value)).toEqual([
      "market",
      "limit",
      "stop",
      "stop_limit",
    ]);
    const tif = screen.getByLabelText("Time in force") as HTMLSelectElement;
    expect([...tif.options].map((o) => o.value)).toEqual(["day", "gtc", "ioc", "fok"]);

    const quantity = screen.getByLabelText("Quantity (lot 0.00001)");
    expect(quantity).toHaveValue("0.00001");
    await user.click(screen.getByRole("button", { name: "Quantity up one lot" }));
    await user.click(screen.getByRole("button", { name: "Quantity up one lot" }));
    expect(quantity).toHaveValue("0.00003");
    await user.click(screen.getByRole("button", { name: "Quantity down one lot" }));
    expect(quantity).toHaveValue("0.00002");
    expect(screen.getByTestId("notional")).toHaveTextContent("0.8600100 USD"); // 0.00002 × ask
    expect(screen.getByTestId("fee")).toHaveTextContent("Est. fee: 0.00 USD (10 bps, min 0)");

    expect(screen.queryByLabelText("Limit price")).toBeNull();
    await user.selectOptions(type, "stop_limit");
    expect(screen.getByLabelText("Stop price")).toBeInTheDocument();
    await user.click(screen.getByRole("button", { name: "Limit price up one tick" }));
    expect(screen.getByLabelText("Limit price")).toHaveValue("43000.51"); // from the ask (a buy), +1 tick
    await user.click(screen.getByRole("button", { name: "Stop price down one tick" }));
    expect(screen.getByLabelText("Stop price")).toHaveValue("43000.49");
  });

  it("refuses off-grid input locally and names the field", async () => {
    const user = userEvent.setup();
    const calls = scriptedFetch([]);
    renderWithQuery(<TradeTicket instrument={BTC} quote={QUOTE} accountId="acc-1" />);
    const quantity = screen.getByLabelText("Quantity (lot 0.00001)");
    await user.clear(quantity);
    await user.type(quantity, "0.000015");
    await user.click(screen.getByRole("button", { name: "Buy BTC-USD" }));
    expect(screen.getByRole("alert")).toHaveTextContent("multiple of the lot size 0.00001");
    expect(quantity).toHaveAttribute("aria-invalid", "true");
    expect(calls).toHaveLength(0);
  });

  it("shows the server's risk denial next to the field it concerns", async () => {
    const user = userEvent.setup();
    const calls = scriptedFetch([
      [
        422,
        {
          error: "OrderDeniedError",
          detail: "order denied: max_order_notional: 4300050 AUD exceeds 1000000 AUD",
          check: "max_order_notional",
          order_id: "o-1",
        },
      ],
    ]);
    renderWithQuery(<TradeTicket instrument={BTC} quote={QUOTE} accountId="acc-1" />);
    const quantity = screen.getByLabelText("Quantity (lot 0.00001)");
    await user.clear(quantity);
    await user.type(quantity, "100");
    await user.click(screen.getByRole("button", { name: "Buy BTC-USD" }));
    const denial = await screen.findByText(/order denied/);
    expect(denial).toHaveAttribute("data-field", "quantity");
    expect(quantity).toHaveAttribute("aria-describedby", denial.id);
    const sent = JSON.parse(String(calls[0]?.init?.body)) as Record<string, unknown>;
    expect(sent).toMatchObject({
      symbol: "BTC-USD",
      side: "buy",
      type: "market",
      quantity: "100",
      time_in_force: "day",
    });
  });
});

describe("errorsByField", () => {
  it("maps validation problems, risk checks and named fields", () => {
    const validation = new ApiError(422, {
      error: "ValidationFailedError",
      detail: "x",
      fields: ["body.limit_price: must be positive", "body: something else"],
    });
    expect(errorsByField(validation)).toEqual({
      limit_price: "body.limit_price: must be positive",
      form: "body: something else",
    });
    const collar = new ApiError(422, {
      error: "OrderDeniedError",
      detail: "order denied: outside the collar",
      check: "price_collar",
    });
    expect(errorsByField(collar)).toEqual({ limit_price: "order denied: outside the collar" });
    const tif = new ApiError(422, {
      detail: "a market order cannot be good-till-canceled (gtc); use day, ioc or fok",
    });
    expect(Object.keys(errorsByField(tif))).toEqual(["time_in_force"]);
    const halted = new ApiError(422, { detail: "order denied: trading is halted", check: "trading_state" });
    expect(errorsByField(halted)).toEqual({ form: "order denied: trading is halted" });
  });
});
