import type { ChatState } from '../client.ts';
import { describeSignIn, isSignInError } from '../errors.ts';
import { embedderHost } from '../token.ts';
import { useNow } from '../useNow.ts';
import { secondsUntil } from './ConnectionStatus.tsx';
import { Icon } from './Icon.tsx';

interface Props {
  state: ChatState;
  onRetry: () => void;
  /** Null when the name is not the user's to change (it comes from the sign-in token). */
  onChangeName: (() => void) | null;
}

const SIGN_IN_TITLES: Record<string, string> = {
  sign_in_expired: 'Your sign-in expired.',
  sign_in_required: 'Sign-in needed.',
  closed_unauthorized: 'Your sign-in was not accepted.',
};

/** Explains, above the messages, why the room is not live right now. */
export function ConnectionBanner({ state, onRetry, onChangeName }: Props) {
  const now = useNow(250);
  if (state.status === 'online') return null;

  let title: string;
  let detail: string;
  let action: { label: string; run: () => void } | null = null;
  switch (state.status) {
    case 'connecting':
      title = state.attempt === 0 ? 'Connecting…' : 'Reconnecting…';
      detail = 'Messages sent while you were away will appear once the connection is up.';
      break;
    case 'reconnecting':
      title = `Connection lost. Trying again in ${secondsUntil(state.retryAt, now)}s.`;
      detail = 'Nothing is lost: missed messages are fetched when the connection comes back.';
      action = { label: 'Retry now', run: onRetry };
      break;
    case 'offline':
      if (state.fatal?.code === 'invalid_name') {
        title = 'That name was refused.';
        detail = state.fatal.message;
        action = onChangeName === null ? null : { label: 'Choose another name', run: onChangeName };
      } else if (state.fatal !== null && isSignInError(state.fatal.code)) {
        // Only a new token helps; it arrives with the link the app opens (`#token=…`).
        title = SIGN_IN_TITLES[state.fatal.code] ?? 'Signed out.';
        detail = describeSignIn(state.fatal.code, embedderHost(document.referrer, window.location.origin));
      } else if (state.fatal !== null) {
        title = 'Protocol error.';
        detail = state.fatal.message;
        action = { label: 'Reconnect', run: onRetry };
      } else {
        title = 'You are offline.';
        detail = 'Reconnect to keep chatting.';
        action = { label: 'Reconnect', run: onRetry };
      }
      break;
  }

  return (
    <div className={`conn-banner conn-${state.status}`} data-testid="connection-banner" data-state={state.status}>
      <div className="conn-text">
        <strong>{title}</strong>
        <span>{detail}</span>
      </div>
      {action !== null && (
        <button type="button" className="btn btn-secondary btn-sm" onClick={action.run}>
          <Icon name="refresh" size={16} />
          {action.label}
        </button>
      )}
    </div>
  );
}
