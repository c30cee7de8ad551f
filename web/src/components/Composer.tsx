import { useLayoutEffect, useRef, useState, type SubmitEvent, type KeyboardEvent } from 'react';
import type { ConnectionStatus } from '../client.ts';
import { isBlank, utf8Length } from '../protocol.ts';
import { Icon } from './Icon.tsx';

interface Props {
  room: string;
  value: string;
  maxBytes: number;
  status: ConnectionStatus;
  onChange: (value: string) => void;
  /** Resolves true once the gateway acked; the parent then clears the draft. */
  onSend: (text: string) => Promise<boolean>;
}

export const COMPOSER_ID = 'message-input';

const numberFormat = new Intl.NumberFormat('en-US');

export function Composer({ room, value, maxBytes, status, onChange, onSend }: Props) {
  const [sending, setSending] = useState(false);
  const [failed, setFailed] = useState(false);
  const textarea = useRef<HTMLTextAreaElement>(null);
  const bytes = utf8Length(value);
  const over = bytes > maxBytes;
  const blank = isBlank(value);

  // Grow with the text, up to the CSS max-height.
  useLayoutEffect(() => {
    const el = textarea.current;
    if (el === null) return;
    el.style.height = 'auto';
    el.style.height = `${el.scrollHeight + 2}px`;
  }, [value]);

  const submit = async () => {
    if (sending || blank || over) return;
    setSending(true);
    setFailed(false);
    const ok = await onSend(value);
    setSending(false);
    setFailed(!ok);
    textarea.current?.focus();
  };

  const onSubmit = (e: SubmitEvent) => {
    e.preventDefault();
    void submit();
  };

  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.ctrlKey || e.metaKey || e.nativeEvent.isComposing) return;
    e.preventDefault();
    void submit();
  };

  const counterLevel = over ? 'over' : bytes > maxBytes * 0.9 ? 'near' : '';
  const hint =
    status === 'online'
      ? 'Enter to send · Shift+Enter for a new line'
      : 'Not connected — keep typing; send once the connection is back.';

  return (
    <form className={`composer${failed ? ' has-failed' : ''}`} onSubmit={onSubmit} aria-label={`Send a message to #${room}`}>
      <div className="composer-box">
        <label htmlFor={COMPOSER_ID} className="sr-only">
          Message #{room}
        </label>
        <textarea
          id={COMPOSER_ID}
          ref={textarea}
          className="composer-input"
          data-testid="message-input"
          rows={1}
          value={value}
          placeholder={`Message #${room}`}
          onChange={(e) => {
            onChange(e.target.value);
            if (failed) setFailed(false);
          }}
          onKeyDown={onKeyDown}
          aria-invalid={over}
          aria-describedby="composer-hint byte-counter"
          enterKeyHint="send"
        />
        <button
          type="submit"
          className="btn btn-primary send-button"
          data-testid="send-button"
          disabled={sending || blank || over}
          aria-busy={sending}
        >
          <Icon name="send" size={16} />
          <span>{sending ? 'Sending…' : 'Send'}</span>
        </button>
      </div>
      <div className="composer-meta">
        <span id="composer-hint" className={`composer-hint${status === 'online' ? '' : ' is-offline'}`}>
          {hint}
        </span>
        <span
          id="byte-counter"
          className={`byte-counter ${counterLevel}`}
          data-testid="byte-counter"
          data-bytes={bytes}
          data-max={maxBytes}
        >
          {over
            ? `${numberFormat.format(bytes - maxBytes)} bytes over the ${numberFormat.format(maxBytes)} limit`
            : `${numberFormat.format(bytes)} / ${numberFormat.format(maxBytes)} bytes`}
        </span>
      </div>
    </form>
  );
}
