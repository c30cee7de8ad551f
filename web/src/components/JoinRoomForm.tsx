import { useId, useState, type SubmitEvent } from 'react';
import { normalizeRoomId } from '../protocol.ts';

interface Props {
  onJoin: (input: string) => string | null;
}

/** "Join or create a room": rooms exist as soon as someone joins them. */
export function JoinRoomForm({ onJoin }: Props) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<string | null>(null);
  const inputId = useId();
  const errorId = useId();
  const hintId = useId();
  const normalized = normalizeRoomId(value);
  const showHint = normalized !== null && normalized !== value.trim();

  const submit = (e: SubmitEvent) => {
    e.preventDefault();
    const problem = onJoin(value);
    setError(problem);
    if (problem === null) setValue('');
  };

  return (
    <form className="join-form" onSubmit={submit} noValidate>
      <label htmlFor={inputId} className="field-label">
        Join or create a room
      </label>
      <div className="join-row">
        <span className="join-prefix" aria-hidden="true">
          #
        </span>
        <input
          id={inputId}
          className="input"
          data-testid="room-input"
          value={value}
          onChange={(e) => {
            setValue(e.target.value);
            if (error !== null) setError(null);
          }}
          placeholder="lobby"
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
            Will join <strong>#{normalized}</strong>
          </p>
        )
      )}
    </form>
  );
}
