import type { ChatState } from '../client.ts';
import { isSignInError } from '../errors.ts';
import { useNow } from '../useNow.ts';

/** Seconds until the next attempt, rounded up, never below 1 while waiting. */
export function secondsUntil(retryAt: number | null, now: number): number {
  return retryAt === null ? 0 : Math.max(1, Math.ceil((retryAt - now) / 1000));
}

function offlineLabel(state: Pick<ChatState, 'fatal'>): string {
  return state.fatal !== null && isSignInError(state.fatal.code) ? 'Signed out' : 'Offline';
}

export function statusLabel(state: Pick<ChatState, 'status' | 'retryAt' | 'fatal'>, now: number): string {
  switch (state.status) {
    case 'connecting':
      return 'Connecting…';
    case 'online':
      return 'Online';
    case 'reconnecting':
      return `Reconnecting in ${secondsUntil(state.retryAt, now)}s`;
    case 'offline':
      return offlineLabel(state);
  }
}

/** A few characters for narrow screens. */
export function shortStatusLabel(state: Pick<ChatState, 'status' | 'retryAt' | 'fatal'>, now: number): string {
  switch (state.status) {
    case 'connecting':
      return 'Connecting';
    case 'online':
      return '';
    case 'reconnecting':
      return `Retry ${secondsUntil(state.retryAt, now)}s`;
    case 'offline':
      return offlineLabel(state);
  }
}

/** The always-visible connection pill. `data-state` is for browser tests. */
export function ConnectionStatus({ state }: { state: ChatState }) {
  const now = useNow(state.status === 'reconnecting' ? 250 : 5000);
  const label = statusLabel(state, now);
  return (
    <div
      className={`status-pill status-${state.status}`}
      data-testid="connection-status"
      data-state={state.status}
      role="status"
      title={state.gateway !== null && state.status === 'online' ? `Connected to ${state.gateway}` : label}
    >
      <span className="status-dot" aria-hidden="true" />
      <span className="sr-only">{label}</span>
      <span className="status-label" aria-hidden="true">
        {label}
      </span>
      <span className="status-label-short" aria-hidden="true">
        {shortStatusLabel(state, now)}
      </span>
    </div>
  );
}
