import { useQuery } from "@tanstack/react-query";
import { api } from "./client";
import type { AccountWithCash, Instrument, Portfolio } from "./types";

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
