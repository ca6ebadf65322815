import { NavLink, Outlet } from "react-router-dom";
import { useAuth } from "../auth";
import { useConnection, useTheme } from "../hooks";

export function ConnectionBadge() {
  const state = useConnection();
  let text: string;
  switch (state.status) {
    case "open":
      text = "Live";
      break;
    case "connecting":
      text = "Connecting…";
      break;
    case "reconnecting":
      text = `Reconnecting (attempt ${state.attempt}, in ${(state.retryInMs / 1000).toFixed(1)} s)`;
      break;
    default:
      text = "Offline";
  }
  return (
    <span className={`badge conn-${state.status}`} role="status" aria-live="polite" data-testid="connection">
      {text}
    </span>
  );
}

export function Layout() {
  const { me, can, logout } = useAuth();
  const [theme, toggleTheme] = useTheme();
  const operations = can("risk:halt") || can("users:manage") || can("audit:read");
  return (
    <div className="app">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">Tradestack</span>
        <nav aria-label="Main">
          <NavLink to="/markets">Markets</NavLink>
          <NavLink to="/orders">Orders</NavLink>
          <NavLink to="/portfolio">Portfolio</NavLink>
          <NavLink to="/signals">Signals</NavLink>
          {can("marketdata:read") && <NavLink to="/backtests">Backtests</NavLink>}
          {operations && <NavLink to="/operations">Operations</NavLink>}
          <NavLink to="/security">Security</NavLink>
        </nav>
        <div className="session">
          <ConnectionBadge />
          <button
            type="button"
            onClick={toggleTheme}
            aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}
          >
            {theme === "dark" ? "Light" : "Dark"}
          </button>
          <span className="who" title={me?.email}>
            {me?.email} ({me?.role})
          </span>
          <button type="button" onClick={() => void logout()}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Outlet />
      </main>
    </div>
  );
}
