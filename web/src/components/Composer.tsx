import { useId, useLayoutEffect, useRef, useState, type SubmitEvent, type KeyboardEvent } from 'react';
import { wireLength, type ConnectionStatus } from '../client.ts';
import { lifetimeLabel } from '../expiry.ts';
import { isBlank } from '../protocol.ts';
import { Icon } from './Icon.tsx';

interface Props {
  room: string;
  value: string;
  maxBytes: number;
  status: ConnectionStatus;
  /** The room is private: text is counted, and sent, encrypted. */
  encrypted: boolean;
  /** Why nothing can be sent to this room, if so (the box is disabled). */
  blockedReason: string | null;
  /** Lifetimes the gateway lets a message choose (v1.1), shortest first; null: no choice. */
  lifetimes: readonly number[] | null;
  lifetime: number | null;
  onLifetime: (ms: number) => void;
  onChange: (value: string) => void;
  /** True once the message is on its way; the parent then clears the draft. */
  onSend: (text: string) => boolean;
}

export const COMPOSER_ID = 'message-input';

const numberFormat = new Intl.NumberFormat('en-US');

export function Composer(props: Props) {
  const { room, value, maxBytes, status, encrypted, blockedReason, lifetimes, lifetime } = props;
  const [failed, setFailed] = useState(false);
  const textarea = useRef<HTMLTextAreaElement>(null);
  const lifetimeId = useId();
  // An empty box weighs nothing, though even an empty ciphertext would not.
  const bytes = value === '' ? 0 : wireLength(value, encrypted);
  const over = bytes > maxBytes;
  const blank = isBlank(value);
  const disabled = blockedReason !== null;

  // Grow with the text, up to the CSS max-height.
  useLayoutEffect(() => {
    const el = textarea.current;
    if (el === null) return;
    el.style.height = 'auto';
    el.style.height = `${el.scrollHeight + 2}px`;
  }, [value]);

  const submit = () => {
    if (blank || over || disabled) return;
    setFailed(!props.onSend(value));
    textarea.current?.focus();
  };

  const onSubmit = (e: SubmitEvent) => {
    e.preventDefault();
    submit();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey || e.nativeEvent.isComposing) return;
    e.preventDefault();
    submit();
  };

  const counterLevel = over ? 'over' : bytes > maxBytes * 0.9 ? 'near' : '';
  const hint =
    blockedReason ??
    (status === 'online'
      ? 'Enter to send · Shift+Enter for a new line'
      : 'Not connected — messages wait here and go once the connection is back.');

  return (
    <form className={`composer${failed ? ' has-failed' : ''}`} onSubmit={onSubmit} aria-label={`Send a message to #${room}`}>
      <div className="composer-box">
        {encrypted && (
          <span className="composer-lock" title="End-to-end encrypted" aria-hidden="true">
            <Icon name="lock" size={16} />
          </span>
        )}
        <label htmlFor={COMPOSER_ID} className="sr-only">
          {encrypted ? `Encrypted message to #${room}` : `Message #${room}`}
        </label>
        <textarea
          id={COMPOSER_ID}
          ref={textarea}
          className="composer-input"
          data-testid="message-input"
          rows={1}
          value={value}
          placeholder={encrypted ? 'Encrypted message' : `Message #${room}`}
          onChange={(e) => {
            props.onChange(e.target.value);
            if (failed) setFailed(false);
          }}
          onKeyDown={onKeyDown}
          disabled={disabled}
          aria-invalid={over}
          aria-describedby="composer-hint byte-counter"
          autoComplete="off"
          enterKeyHint="send"
        />
        <button
          type="submit"
          className="btn btn-primary send-button"
          data-testid="send-button"
          disabled={blank || over || disabled}
        >
          <Icon name="send" size={16} />
          <span>Send</span>
        </button>
      </div>
      <div className="composer-meta">
        <span id="composer-hint" className={`composer-hint${status === 'online' && !disabled ? '' : ' is-offline'}`}>
          {hint}
        </span>
        {lifetimes !== null && lifetimes.length > 1 && lifetime !== null && (
          <span className="lifetime">
            <label htmlFor={lifetimeId}>
              <Icon name="clock" size={13} />
              <span className="lifetime-label">Fades after</span>
            </label>
            <select
              id={lifetimeId}
              className="lifetime-select"
              data-testid="lifetime-select"
              value={lifetime}
              aria-label="How long your next message lives"
              onChange={(e) => {
                props.onLifetime(Number(e.target.value));
              }}
            >
              {lifetimes.map((ms) => (
                <option key={ms} value={ms}>
                  {lifetimeLabel(ms)}
                </option>
              ))}
            </select>
          </span>
        )}
        <span
          id="byte-counter"
          className={`byte-counter ${counterLevel}`}
          data-testid="byte-counter"
          data-bytes={bytes}
          data-max={maxBytes}
          data-encrypted={encrypted}
        >
          {over
            ? `${numberFormat.format(bytes - maxBytes)} bytes over the ${numberFormat.format(maxBytes)} limit`
            : `${numberFormat.format(bytes)} / ${numberFormat.format(maxBytes)} bytes`}
          {encrypted && (over ? ' once encrypted' : ' encrypted')}
        </span>
      </div>
    </form>
  );
}
