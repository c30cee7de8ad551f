import { useId, useState, type SubmitEvent } from 'react';
import { nameProblem, normalizeRoomId } from '../protocol.ts';
import { linkFromUrl } from '../route.ts';
import { Logo } from './Logo.tsx';

interface Props {
  initialName: string;
  /** Something about the link the user should know (shown above the form's fields). */
  notice: string | null;
  onSubmit: (name: string) => void;
}

/** First screen: who are you? The name is remembered for next time. */
export function NameGate({ initialName, notice, onSubmit }: Props) {
  const [name, setName] = useState(initialName);
  const [error, setError] = useState<string | null>(null);
  const inputId = useId();
  const errorId = useId();
  const [invitedTo] = useState(() => {
    const linked = linkFromUrl(window.location.hash, window.location.search);
    const room = linked === null ? null : normalizeRoomId(linked.room);
    return room === null || linked === null ? null : { room, private: linked.key !== null };
  });

  const submit = (e: SubmitEvent) => {
    e.preventDefault();
    const problem = nameProblem(name);
    setError(problem);
    if (problem === null) onSubmit(name.trim());
  };

  return (
    <main className="gate">
      <form className="gate-card" onSubmit={submit} noValidate aria-labelledby="gate-title">
        <Logo />
        <h1 id="gate-title" className="gate-title">
          {invitedTo === null
            ? 'Welcome to WhisperRooms'
            : invitedTo.private
              ? 'You’re invited to a private room'
              : `You're invited to #${invitedTo.room}`}
        </h1>
        <p className="gate-lede">
          Group chat that forgets. Every message fades away a few minutes after it is sent — no history, no
          archive.
        </p>
        {notice !== null && (
          <p className="field-error" role="alert" data-testid="gate-notice">
            {notice}
          </p>
        )}
        <label htmlFor={inputId} className="field-label">
          Your name
        </label>
        <input
          id={inputId}
          className="input input-lg"
          data-testid="name-input"
          value={name}
          onChange={(e) => {
            setName(e.target.value);
            if (error !== null) setError(null);
          }}
          autoComplete="nickname"
          autoFocus
          maxLength={64}
          placeholder="e.g. Ada"
          aria-invalid={error !== null}
          aria-describedby={error === null ? undefined : errorId}
          spellCheck={false}
        />
        {error !== null && (
          <p id={errorId} className="field-error" role="alert" data-testid="name-error">
            {error}
          </p>
        )}
        <button type="submit" className="btn btn-primary btn-lg btn-block" data-testid="connect-button">
          {invitedTo === null
            ? 'Start chatting'
            : invitedTo.private
              ? 'Join the private room'
              : `Join #${invitedTo.room}`}
        </button>
        <p className="gate-note">Others see this name next to your messages. It is stored only in this browser.</p>
      </form>
    </main>
  );
}
