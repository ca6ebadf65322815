import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useQueryClient } from "@tanstack/react-query";
import { api, session } from "./api/client";
import { live } from "./api/live";
import type { Me } from "./api/types";

interface Auth {
  me: Me | null;
  ready: boolean;
  can: (permission: string) => boolean;
  signedIn: () => Promise<void>;
  logout: () => Promise<void>;
}

const AuthContext = createContext<Auth | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null>(null);
  const [ready, setReady] = useState(false);
  const queryClient = useQueryClient();

  const signedIn = useCallback(async () => {
    setMe(await api<Me>("/api/auth/me"));
    live.start();
  }, []);

  useEffect(() => {
    // A reloaded page has no access token: the refresh cookie (if any) gets a new one.
    let cancelled = false;
    void (async () => {
      try {
        if (await session.refresh()) {
          const profile = await api<Me>("/api/auth/me");
          if (!cancelled) {
            setMe(profile);
            live.start();
          }
        }
      } finally {
        if (!cancelled) setReady(true);
      }
    })();
    const off = session.onChange((isIn) => {
      if (!isIn) {
        setMe(null);
        live.stop();
      }
    });
    return () => {
      cancelled = true;
      off();
    };
  }, []);

  const logout = useCallback(async () => {
    await session.logout();
    live.stop();
    queryClient.clear();
    setMe(null);
  }, [queryClient]);

  const value = useMemo<Auth>(
    () => ({
      me,
      ready,
      can: (permission: string) => me?.permissions.includes(permission) ?? false,
      signedIn,
      logout,
    }),
    [me, ready, signedIn, logout],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): Auth {
  const auth = useContext(AuthContext);
  if (!auth) throw new Error("useAuth outside AuthProvider");
  return auth;
}

export function useAccount(): string | null {
  const { me } = useAuth();
  return me?.accounts[0]?.id ?? null;
}
