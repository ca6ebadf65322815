import type { Instrument } from "../api/types";

function venueTime(ts: string, timeZone: string): string {
  return new Date(ts).toLocaleString(undefined, { timeZone, dateStyle: "medium", timeStyle: "short" });
}

export function InstrumentInfo({ instrument }: { instrument: Instrument }) {
  return (
    <section className="panel info" aria-label="Instrument">
      <h2>{instrument.name}</h2>
      <dl>
        <dt>Session</dt>
        <dd>
          <span className={instrument.open_now ? "badge open" : "badge closed"}>
            {instrument.open_now ? "Open" : "Closed"}
          </span>{" "}
          {instrument.next_open && (
            <span data-testid="next-open">
              opens{" "}
              <time dateTime={instrument.next_open}>
                {venueTime(instrument.next_open, instrument.timezone)} venue time
              </time>{" "}
            </span>
          )}
          {instrument.next_close && (
            <span data-testid="next-close">
              closes{" "}
              <time dateTime={instrument.next_close}>
                {venueTime(instrument.next_close, instrument.timezone)} venue time
              </time>{" "}
            </span>
          )}
          ({instrument.venue}, {instrument.timezone})
        </dd>
        {instrument.calendar_until && (
          <>
            <dt>Holidays</dt>
            <dd data-testid="calendar-until">known to {instrument.calendar_until}</dd>
          </>
        )}
        <dt>Tick</dt>
        <dd>{instrument.tick_size}</dd>
        <dt>Lot</dt>
        <dd>{instrument.lot_size}</dd>
        <dt>Currency</dt>
        <dd>{instrument.quote_currency}</dd>
        <dt>Kind</dt>
        <dd>{instrument.kind}</dd>
        <dt>Tradable</dt>
        <dd>{instrument.tradable ? "yes" : "no"}</dd>
      </dl>
    </section>
  );
}
