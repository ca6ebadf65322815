import { render, screen } from "@testing-library/react";
import type { Instrument } from "../api/types";
import { InstrumentInfo } from "./InstrumentInfo";

const AAPL: Instrument = {
  symbol: "AAPL",
  kind: "equity",
  venue: "NASDAQ",
  name: "Apple Inc.",
  quote_currency: "USD",
  base_currency: null,
  tick_size: "0.01",
  lot_size: "1",
  tradable: true,
  timezone: "America/New_York",
  open_now: true,
  next_open: null,
  next_close: "2026-11-27T18:00:00Z",
  calendar_until: "2029-12-31",
  fee_bps: "0",
  fee_minimum: "0",
};

it("shows when a half day closes, in venue time, and how far the holiday calendar reaches", () => {
  render(<InstrumentInfo instrument={AAPL} />);
  const closes = screen.getByTestId("next-close");
  expect(closes).toHaveTextContent(/closes .*1:00\sPM venue time/);
  expect(closes.querySelector("time")).toHaveAttribute("datetime", "2026-11-27T18:00:00Z");
  expect(screen.getByTestId("calendar-until")).toHaveTextContent("known to 2029-12-31");
  expect(screen.queryByTestId("next-open")).toBeNull();
});

it("says nothing about holidays for a venue without an exchange calendar", () => {
  render(
    <InstrumentInfo instrument={{ ...AAPL, venue: "CRYPTO", next_close: null, calendar_until: null }} />,
  );
  expect(screen.queryByTestId("calendar-until")).toBeNull();
  expect(screen.queryByTestId("next-close")).toBeNull();
});
