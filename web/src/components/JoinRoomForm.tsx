import { useId, useState, type SubmitEvent } from 'react';
import { normalizeRoomId } from '../protocol.ts';
import { linkFromText } from '../route.ts';
import { Icon } from './Icon.tsx';

interface Props {
  /** The gateway carries only encrypted rooms: only links to private rooms are joined. */
  privateOnly: boolean;
  /** This page can encrypt (else private rooms cannot be created). */
  encryption: boolean;
  onJoin: (input: string) => string | null;
  onNewPrivateRoom: () => string | null;
}

/** "Join or create a room" (rooms exist as soon as someone joins them), or start a private one. */
export function JoinRoomForm({ privateOnly, encryption, onJoin, onNewPrivateRoom }: Props) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const inputId = useId();
  const errorId = useId();
  const hintId = useId();
  const link = linkFromText(value);
  const normalized = normalizeRoomId(link?.room ?? value);
  const showHint = normalized !== null && (link !== null || normalized !== value.trim());

  const submit = (e: SubmitEvent) => {
    e.preventDefault();
    const problem = onJoin(value);
    setError(problem);
    if (problem === null) setValue('');
  };

  return (
    <form className="join-form" onSubmit={submit} noValidate>
      <label htmlFor={inputId} className="field-label">
        {privateOnly ? 'Open a private room’s link' : 'Join or create a room'}
      </label>
      <div className="join-row">
        {!privateOnly && (
          <span className="join-prefix" aria-hidden="true">
            #
          </span>
        )}
        <input
          id={inputId}
          className="input"
          data-testid="room-input"
          value={value}
          onChange={(e) => {
            setValue(e.target.value);
            if (error !== null) setError(null);
          }}
          placeholder={privateOnly ? 'paste a link' : 'lobby'}
          autoComplete="off"
          autoCapitalize="none"
          spellCheck={false}
          aria-invalid={error !== null}
          aria-describedby={[error === null ? '' : errorId, showHint ? hintId : ''].join(' ').trim() || undefined}
        />
        <button type="submit" className="btn btn-primary" data-testid="join-button">
          Join
        </button>
      </div>
      {error !== null ? (
        <p id={errorId} className="field-error" role="alert" data-testid="room-error">
          {error}
        </p>
      ) : (
        showHint && (
          <p id={hintId} className="field-hint">
            Will join {link !== null && link.key !== null ? 'the private room ' : ''}
            <strong>#{normalized}</strong>
          </p>
        )
      )}
      <button
        type="button"
        className="btn btn-secondary btn-block new-private"
        data-testid="new-private-room"
        disabled={!encryption}
        title={
          encryption
            ? 'A room with a random name and a key that only its link carries: the server sees nothing but ciphertext'
            : 'Private rooms need a secure connection (HTTPS) in this browser'
        }
        onClick={() => {
          setError(onNewPrivateRoom());
        }}
      >
        <Icon name="lock" size={16} />
        New private room
      </button>
    </form>
  );
}
