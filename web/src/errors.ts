/**
 * Human words for every error the user can meet: the protocol's error codes
 * and the few failures the client detects on its own.
 */
import { DEFAULT_LIMITS, type ErrorCode, type Limits } from './protocol.ts';

/** Failures found by the client, never sent by a gateway. */
export type LocalErrorCode =
  | 'offline'
  | 'connection_lost'
  | 'timeout'
  | 'protocol'
  | 'closed_unauthorized'
  | 'sign_in_expired'
  | 'sign_in_required'
  | 'token_in_query'
  | 'policy'
  | 'not_sent_in_time'
  | 'bad_key'
  | 'no_crypto';

export type AnyErrorCode = ErrorCode | LocalErrorCode;

/** An error as the UI shows it. */
export class ChatError extends Error {
  readonly code: string;
  readonly room: string | undefined;

  constructor(code: string, message: string, room?: string) {
    super(message);
    this.name = 'ChatError';
    this.code = code;
    this.room = room;
  }
}

/** The codes a 4001 close stops with: a new token from the embedding app is needed. */
const SIGN_IN_ERRORS: readonly string[] = ['closed_unauthorized', 'sign_in_expired', 'sign_in_required'];

export function isSignInError(code: string): boolean {
  return SIGN_IN_ERRORS.includes(code);
}

/**
 * What to do after a sign-in failure, naming the app that embeds the chat
 * (`app`, e.g. its host) when known.
 */
export function describeSignIn(code: string, app: string | null): string {
  const from = app ?? 'the app you opened it from';
  switch (code) {
    case 'sign_in_required':
      return `This chat server only lets in people signed in by an app: open the chat from ${app ?? 'that app'}.`;
    case 'sign_in_expired':
      return `Your sign-in expired. Reopen the chat from ${from} to carry on.`;
    default:
      return `Your sign-in was not accepted. Reopen the chat from ${from} to sign in again.`;
  }
}

/**
 * Explains `code` in plain words. `serverMessage` is the gateway's own text,
 * used for codes this version does not know.
 */
export function describeError(
  code: string,
  serverMessage = '',
  limits: Limits = DEFAULT_LIMITS,
): string {
  switch (code as AnyErrorCode) {
    case 'bad_request':
      return 'The server did not understand that request. Reloading the page usually fixes this.';
    case 'invalid_room':
      return 'Room names use a–z, 0–9, “-” and “_”, start with a letter or digit, and are at most 64 characters.';
    case 'invalid_name':
      return 'That name is not allowed: use 1–32 characters, without control, direction-override or invisible characters.';
    case 'too_large':
      return `That message is too long: the limit is ${limits.max_text_bytes.toLocaleString('en-US')} bytes.`;
    case 'empty':
      return 'Type something first: empty messages are not sent.';
    case 'not_joined':
      return 'You are not in that room any more. Join it again to send messages.';
    case 'too_many_rooms':
      return `You are in too many rooms (the limit is ${limits.max_rooms}). Leave one to join another.`;
    case 'rate_limited':
      return 'You are sending messages too fast. Wait a moment, then try again.';
    case 'unavailable':
      return 'The chat service could not take your message right now. It was not sent; try again.';
    case 'invalid_ttl':
      return 'The server does not offer that lifetime any more. Pick another one, then retry.';
    case 'encryption_required':
      return 'This server only carries end-to-end encrypted messages: send them in a private room.';
    case 'blocked':
      return 'The server’s content policy refused this message. It was not sent.';
    case 'unauthorized':
      return 'You are not authorized to chat here. Your sign-in may have expired.';
    case 'closed_unauthorized':
    case 'sign_in_expired':
    case 'sign_in_required':
      return describeSignIn(code, null);
    case 'token_in_query':
      return 'The link carried a sign-in token in its query string (?token=), which servers and their logs see, so it was ignored. The app that links here must put it after “#” (#token=…).';
    case 'offline':
      return 'You are offline: nothing can be sent until you reconnect. The message is still in the box.';
    case 'connection_lost':
      return 'The connection dropped before the server confirmed this message. Check the room, then retry if it is missing.';
    case 'timeout':
      return 'The server did not confirm this message in time. Check the room, then retry if it is missing.';
    case 'protocol':
      return 'The server closed the connection because this page broke the protocol. Reload the page to get the latest version.';
    case 'policy':
      return 'The server cut the connection for sending too much. Reconnecting after a pause.';
    case 'not_sent_in_time':
      return 'A message could not be sent before its lifetime ran out, so it was dropped.';
    case 'bad_key':
      return 'The link’s key is damaged: ask for the link again. Its room opens without it, and its messages stay locked.';
    case 'no_crypto':
      return 'This browser cannot encrypt on this page (it needs a secure connection, HTTPS), so private rooms stay locked.';
    default:
      return serverMessage.trim() || `Something went wrong (${code}).`;
  }
}
