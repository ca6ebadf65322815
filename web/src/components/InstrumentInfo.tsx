import type { Instrument } from "../api/types";

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
                {new Date(instrument.next_open).toLocaleString(undefined, {
                  timeZone: instrument.timezone,
                  dateStyle: "medium",
                  timeStyle: "short",
                })}{" "}
                venue time
              </time>{" "}
            </span>
          )}
          ({instrument.venue}, {instrument.timezone})
        </dd>
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
