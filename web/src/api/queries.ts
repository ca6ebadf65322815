import { useQuery } from "@tanstack/react-query";
import { api } from "./client";
import type { AccountWithCash, EquitySeries, Instrument, Portfolio } from "./types";

export function useInstruments() {
  return useQuery({
    queryKey: ["instruments"],
    queryFn: async () => (await api<{ instruments: Instrument[] }>("/api/market/instruments")).instruments,
    staleTime: 60_000,
  });
}

export function useAccounts() {
  return useQuery({ queryKey: ["accounts"], queryFn: () => api<AccountWithCash[]>("/api/accounts") });
}

export function usePortfolio(accountId: string | null) {
  return useQuery({
    queryKey: ["portfolio", accountId],
    queryFn: () => api<Portfolio>(`/api/portfolio?account_id=${encodeURIComponent(accountId ?? "")}`),
    enabled: accountId !== null,
  });
}

/** The account's recorded equity over the last 30 days (the API's default range), looked at again every minute. */
export function useEquityHistory(accountId: string | null) {
  return useQuery({
    queryKey: ["portfolio", "equity", accountId],
    queryFn: () =>
      api<EquitySeries>(`/api/portfolio/equity?account_id=${encodeURIComponent(accountId ?? "")}`),
    enabled: accountId !== null,
    refetchInterval: 60_000,
  });
}
