import { useEffect, useState } from "react";
import { live, type ConnectionState, type LiveFrame } from "./api/live";

/** Call `handler` with each frame of `channel` while mounted (null: nothing). */
export function useChannel(channel: string | null, handler: (frame: LiveFrame) => void): void {
  useEffect(() => {
    if (!channel) return;
    return live.subscribe(channel, handler);
  }, [channel, handler]);
}

export function useConnection(): ConnectionState {
  const [state, setState] = useState<ConnectionState>(live.state);
  useEffect(() => live.onState(setState), []);
  return state;
}

export function useTheme(): ["dark" | "light", () => void] {
  const [theme, setTheme] = useState<"dark" | "light">(() => {
    const saved = localStorage.getItem("theme");
    if (saved === "dark" || saved === "light") return saved;
    return window.matchMedia?.("(prefers-color-scheme: light)").matches ? "light" : "dark";
  });
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("theme", theme);
  }, [theme]);
  return [theme, () => setTheme((current) => (current === "dark" ? "light" : "dark"))];
}

function currentTheme(): string {
  return document.documentElement.dataset.theme ?? "dark";
}

/** The theme in effect (follows the data-theme attribute of <html>). */
export function useThemeName(): string {
  const [name, setName] = useState(currentTheme);
  useEffect(() => {
    const observer = new MutationObserver(() => setName(currentTheme()));
    observer.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    return () => observer.disconnect();
  }, []);
  return name;
}

/** Your accounts' updates: kind "orders" gives frames of type "order", "fills" → "fill", "portfolio" → "portfolio". */
export function useAccountStream(
  kind: "orders" | "fills" | "portfolio",
  handler: (frame: LiveFrame) => void,
): void {
  useEffect(() => {
    const type = kind === "portfolio" ? "portfolio" : kind.slice(0, -1);
    const offType = live.onType(type, handler);
    const offChannel = live.subscribe(kind, () => undefined);
    return () => {
      offType();
      offChannel();
    };
  }, [kind, handler]);
}
