import { memo } from 'react';
import type { ChatMessage } from '../client.ts';
import { lifeLeft, messageTimeLeft, toLocalTime } from '../expiry.ts';
import { Avatar } from './Avatar.tsx';
import { ExpiryIndicator } from './ExpiryIndicator.tsx';
import { Icon } from './Icon.tsx';
import { MessageBody } from './MessageBody.tsx';

interface Props {
  message: ChatMessage;
  /** The room is end-to-end encrypted (plain text in it is flagged). */
  privateRoom: boolean;
  /** Follows a message by the same person a moment earlier: no header. */
  grouped: boolean;
  now: number;
  offset: number;
}

/** The last stretch of a message's life, during which it fades out. */
export const FADE_MS = 4_000;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export const MessageItem = memo(function MessageItem({ message, privateRoom, grouped, now, offset }: Props) {
  const left = messageTimeLeft(message.ts, message.expires_at, now, offset);
  const life = lifeLeft(message.ts, message.expires_at, now, offset);
  const sent = new Date(toLocalTime(message.ts, offset));
  const fading = left <= FADE_MS;
  const classes = ['msg', message.own ? 'is-own' : '', grouped ? 'is-grouped' : '', fading ? 'is-fading' : '']
    .filter(Boolean)
    .join(' ');
  return (
    <li
      className={classes}
      data-testid="message"
      data-id={message.id}
      data-own={message.own}
      data-body={message.body.kind}
    >
      <div className="msg-gutter">
        {grouped ? (
          <time className="msg-time-hint" dateTime={sent.toISOString()} aria-hidden="true">
            {timeFormat.format(sent)}
          </time>
        ) : (
          <Avatar name={message.user.name} />
        )}
      </div>
      <div className="msg-body">
        <div className={grouped ? 'msg-head sr-only' : 'msg-head'}>
          <bdi className="msg-sender" data-testid="message-sender" data-user-id={message.user.id}>
            {message.user.name}
          </bdi>
          {message.own && <span className="you-tag">you</span>}
          <time className="msg-time" dateTime={sent.toISOString()} title={fullFormat.format(sent)}>
            {timeFormat.format(sent)}
          </time>
        </div>
        <MessageBody body={message.body} privateRoom={privateRoom} />
        {message.own && (
          <p className="msg-status" data-testid="message-status" data-state="sent">
            <Icon name="check" size={13} />
            Sent
          </p>
        )}
      </div>
      <ExpiryIndicator left={left} life={life} expiresAt={message.expires_at} />
    </li>
  );
});
