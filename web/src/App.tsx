import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { lazy, Suspense, useState } from "react";
import { BrowserRouter, Navigate, Route, Routes } from "react-router-dom";
import { ApiError } from "./api/client";
import { AuthProvider, useAuth } from "./auth";
import { Layout } from "./components/Layout";
import { Login } from "./screens/Login";
import { Markets } from "./screens/Markets";

const Orders = lazy(() => import("./screens/Orders"));
const Portfolio = lazy(() => import("./screens/Portfolio"));
const Signals = lazy(() => import("./screens/Signals"));
const Backtests = lazy(() => import("./screens/Backtests"));
const Operations = lazy(() => import("./screens/Operations"));
const Security = lazy(() => import("./screens/Security"));

export function makeQueryClient(): QueryClient {
  return new QueryClient({
    defaultOptions: {
      queries: {
        staleTime: 5_000,
        retry: (count, error) => !(error instanceof ApiError && error.status < 500) && count < 2,
        refetchOnWindowFocus: false,
      },
    },
  });
}

function Routed() {
  const { me, ready, can } = useAuth();
  if (!ready) return <p className="loading">Loading…</p>;
  if (!me) {
    return (
      <Routes>
        <Route path="*" element={<Login />} />
      </Routes>
    );
  }
  const operations = can("risk:halt") || can("users:manage") || can("audit:read");
  const backtests = can("marketdata:read"); // GET /api/backtests needs it
  return (
    <Suspense fallback={<p className="loading">Loading…</p>}>
      <Routes>
        <Route element={<Layout />}>
          <Route index element={<Navigate to="/markets" replace />} />
          <Route path="/login" element={<Navigate to="/markets" replace />} />
          <Route path="/markets" element={<Markets />} />
          <Route path="/markets/:symbol" element={<Markets />} />
          <Route path="/orders" element={<Orders />} />
          <Route path="/orders/:orderId" element={<Orders />} />
          <Route path="/portfolio" element={<Portfolio />} />
          <Route path="/signals" element={<Signals />} />
          {backtests && <Route path="/backtests" element={<Backtests />} />}
          {backtests && <Route path="/backtests/:runId" element={<Backtests />} />}
          {operations && <Route path="/operations" element={<Operations />} />}
          <Route path="/security" element={<Security />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </Suspense>
  );
}

function NotFound() {
  return (
    <section className="panel">
      <h1>Not found</h1>
      <p>This page does not exist or your role cannot open it.</p>
    </section>
  );
}

export function App() {
  const [client] = useState(makeQueryClient);
  return (
    <QueryClientProvider client={client}>
      <BrowserRouter>
        <AuthProvider>
          <Routed />
        </AuthProvider>
      </BrowserRouter>
    </QueryClientProvider>
  );
}
