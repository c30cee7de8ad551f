import type { OutgoingMessage } from '../client.ts';
import { Icon } from './Icon.tsx';
import { LinkifiedText } from './LinkifiedText.tsx';

interface Props {
  message: OutgoingMessage;
  onRetry: (cid: string) => void;
  /** Puts the text back in the composer and drops this entry. */
  onEdit: (message: OutgoingMessage) => void;
  onDiscard: (cid: string) => void;
}

/** Refusals the same message cannot overcome: a retry would be refused again. */
const FINAL = new Set(['blocked', 'too_large', 'empty', 'encryption_required', 'bad_request']);

/** One of our messages on its way: "Sending…", "Sent", or "Not sent" and what can be done. */
export function OutgoingItem({ message, onRetry, onEdit, onDiscard }: Props) {
  const { status, error } = message;
  const code = error?.code ?? '';
  return (
    <li
      className={`msg is-own is-outgoing is-${status}`}
      data-testid="outgoing"
      data-cid={message.cid}
      data-state={status}
    >
      <div className="msg-gutter" />
      <div className="msg-body">
        <div className="msg-text" data-testid="message-text" dir="auto">
          <LinkifiedText text={message.text} />
        </div>
        {status === 'failed' ? (
          <div className="msg-status is-failed" role="alert" data-testid="message-status" data-state="failed" data-code={code}>
            <p>
              <Icon name="alert" size={13} />
              {code === 'blocked' ? (
                <strong>Refused by the server’s content policy — not sent.</strong>
              ) : (
                <>
                  <strong>Not sent.</strong> {error?.message}
                </>
              )}
            </p>
            <p className="msg-actions">
              {!FINAL.has(code) && (
                <button
                  type="button"
                  className="link-button"
                  data-testid="retry-send"
                  onClick={() => {
                    onRetry(message.cid);
                  }}
                >
                  Retry
                </button>
              )}
              <button
                type="button"
                className="link-button"
                data-testid="edit-send"
                onClick={() => {
                  onEdit(message);
                }}
              >
                Edit
              </button>
              <button
                type="button"
                className="link-button"
                data-testid="discard-send"
                onClick={() => {
                  onDiscard(message.cid);
                }}
              >
                Discard
              </button>
            </p>
          </div>
        ) : (
          <p className="msg-status" data-testid="message-status" data-state={status}>
            {status === 'sent' ? <Icon name="check" size={13} /> : <span className="msg-spinner" aria-hidden="true" />}
            {status === 'sent' ? 'Sent' : 'Sending…'}
          </p>
        )}
      </div>
    </li>
  );
}
