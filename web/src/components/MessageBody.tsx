import type { MessageBody as Body } from '../client.ts';
import { Icon } from './Icon.tsx';
import { LinkifiedText } from './LinkifiedText.tsx';

/**
 * What a message says: its text (links as safe anchors, isolated from the
 * text around it so direction overrides stay inside), or why it cannot be
 * read. Never ciphertext.
 */
export function MessageBody({ body, privateRoom }: { body: Body; privateRoom: boolean }) {
  switch (body.kind) {
    case 'text':
      return (
        <>
          <div className="msg-text" data-testid="message-text" dir="auto">
            <LinkifiedText text={body.text} />
          </div>
          {privateRoom && !body.encrypted && (
            <p className="msg-note is-warn" data-testid="message-plain">
              <Icon name="alert" size={13} />
              Sent without encryption: the server could read this one.
            </p>
          )}
        </>
      );
    case 'locked':
      return (
        <p className="msg-text msg-placeholder" data-testid="message-text">
          <Icon name="lock" size={14} />
          Encrypted — ask for the room’s link to read it.
        </p>
      );
    case 'unreadable':
      return (
        <p className="msg-text msg-placeholder is-warn" data-testid="message-text">
          <Icon name="alert" size={14} />
          This message could not be decrypted (another key, or it was altered).
        </p>
      );
    case 'decrypting':
      return (
        <p className="msg-text msg-placeholder" data-testid="message-text">
          Decrypting…
        </p>
      );
  }
}
