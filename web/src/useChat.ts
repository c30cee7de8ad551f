/**
 * useChat: the bridge between one ChatClient and React.
 *
 * Owns what is about the page rather than the protocol: the URL (current
 * room, and a private room's key), the sign-in token the embedding app gave
 * the page (new ones go to the client as they come), what localStorage
 * remembers (rooms, own user ids, pinned rooms' keys), toasts, screen
 * reader announcements, desktop notifications and the expiry sweep, which
 * takes message text off the page (live region and notifications included)
 * at `expires_at`.
 */
import { useCallback, useEffect, useEffectEvent, useState, useSyncExternalStore } from 'react';
import { ChatClient, type ChatMessage, type ChatState, type MessageBody } from './client.ts';
import { encryptionAvailable, newPrivateRoomId, newRoomKey } from './crypto.ts';
import { ChatError, describeError } from './errors.ts';
import { ensureNotificationPermission, notificationPermission, showNotification } from './notifications.ts';
import { WS_PATH, normalizeRoomId } from './protocol.ts';
import { hashForRoom, isRouteHash, linkFromText, linkFromUrl, type RoomLink } from './route.ts';
import { storage } from './storage.ts';
import type { PageAuth } from './token.ts';
import { MessageTraces, type Announcement } from './traces.ts';

export interface Toast {
  id: number;
  code: string;
  title: string;
  message: string;
}

export interface ChatApi {
  state: ChatState;
  toasts: readonly Toast[];
  announcements: readonly Announcement[];
  notifications: { supported: boolean; enabled: boolean; denied: boolean };
  /** This page can encrypt (private rooms need WebCrypto, so HTTPS or localhost). */
  encryption: boolean;
  /** Rooms whose key the user asked to keep in this browser. */
  pinned: ReadonlySet<string>;
  /** Joins (or switches to) the room typed, or the room link pasted; returns an error to show inline, or null. */
  joinRoom: (input: string) => string | null;
  /** Creates and opens a private room (random id and key); returns an error to show, or null. */
  newPrivateRoom: () => string | null;
  selectRoom: (room: string | null) => void;
  leaveRoom: (room: string) => void;
  setPinned: (room: string, pinned: boolean) => void;
  /** True when the message is queued (clear the box); false, with a toast, when it cannot go. */
  send: (room: string, text: string, ttlMs: number | null) => boolean;
  retry: (room: string, cid: string) => void;
  discard: (room: string, cid: string) => void;
  reconnectNow: () => void;
  dismissToast: (id: number) => void;
  setNotifications: (on: boolean) => Promise<void>;
}

const MAX_TOASTS = 4;
/** The sweep runs at least this often, and at each expiry in between. */
const SWEEP_MS = 1000;

let nextId = 1;

export function socketUrl(location: Location): string {
  const url = new URL(WS_PATH, location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.search = '';
  return url.toString();
}

function makeToast(code: string, message: string, title: string): Toast {
  return { id: nextId++, code, title, message };
}

function titleFor(err: ChatError, context: 'send' | 'join' | 'other'): string {
  if (context === 'send' || err.code === 'not_sent_in_time') return 'Message not sent';
  if (context === 'join' && err.room !== undefined) return `Could not join #${err.room}`;
  return 'Something went wrong';
}

/** What a screen reader hears of a message body (a notification of a plain room shows the same). */
function bodyWords(body: MessageBody): string {
  switch (body.kind) {
    case 'text': {
      // By code points, so an emoji is never cut in half.
      const chars = Array.from(body.text);
      return chars.length > 280 ? `${chars.slice(0, 280).join('')}…` : body.text;
    }
    case 'locked':
      return 'an encrypted message (ask for the room’s link to read it)';
    case 'unreadable':
      return 'an encrypted message that could not be decrypted';
    case 'decrypting':
      return 'an encrypted message';
  }
}

/**
 * Joins a room a link names, with its key when it has one. A key this page
 * cannot use still joins the room (its messages stay locked) and says why.
 */
function joinLink(client: ChatClient, link: RoomLink, toast: (t: Toast) => void): string | null {
  const room = normalizeRoomId(link.room);
  if (room === null) {
    toast(makeToast('invalid_room', describeError('invalid_room'), `The link names no valid room (“${link.room}”)`));
    return null;
  }
  try {
    client.join(room, link.key);
  } catch (e) {
    if (!(e instanceof ChatError)) throw e;
    toast(makeToast(e.code, e.message, `Could not open #${room}`));
    if (e.code !== 'bad_key' && e.code !== 'no_crypto') return null;
    client.join(room);
  }
  return room;
}

interface Setup {
  client: ChatClient;
  traces: MessageTraces;
  toasts: Toast[];
}

/** Builds the client and reads what the URL and storage ask for. No I/O happens here. */
function setup(name: string, auth: PageAuth): Setup {
  const client = new ChatClient({
    url: socketUrl(window.location),
    name,
    ...(auth.token === null ? {} : { token: auth.token }),
    selfIds: storage.selfIds(),
  });
  const toasts: Toast[] = [];
  if (auth.ignoredQueryToken) {
    toasts.push(makeToast('token_in_query', describeError('token_in_query'), 'Sign-in token ignored'));
  }
  const saved = storage.rooms();
  const keys = storage.roomKeys();
  for (const room of saved) {
    try {
      client.join(room, keys[room] ?? null);
    } catch {
      // A stale or tampered entry: skip it.
    }
  }
  let active = saved.find((r) => client.getState().rooms.some((x) => x.id === r)) ?? null;
  const linked = linkFromUrl(window.location.hash, window.location.search);
  if (linked !== null) {
    active = joinLink(client, linked, (t) => toasts.push(t)) ?? active;
  }
  client.setActiveRoom(active);
  return { client, traces: new MessageTraces(), toasts };
}

export function useChat(name: string, auth: PageAuth): ChatApi {
  const [{ client, traces, toasts: initialToasts }] = useState(() => setup(name, auth));
  const state = useSyncExternalStore(client.subscribe, client.getState);
  const announcements = useSyncExternalStore(traces.subscribe, traces.announcements);
  const [toasts, setToasts] = useState<readonly Toast[]>(initialToasts);
  const [notifyOn, setNotifyOn] = useState(() => storage.notify() && notificationPermission() === 'granted');
  const [denied, setDenied] = useState(() => notificationPermission() === 'denied');
  const [pinned, setPinnedRooms] = useState<ReadonlySet<string>>(() => new Set(Object.keys(storage.roomKeys())));

  const pushToast = useCallback((toast: Toast) => {
    setToasts((list) =>
      [...list.filter((t) => !(t.code === toast.code && t.title === toast.title)), toast].slice(-MAX_TOASTS),
    );
  }, []);

  // ---- connection lifetime
  useEffect(() => {
    // Deferred a tick so that StrictMode's mount → unmount → mount in
    // development does not open a socket only to close it at once.
    const start = setTimeout(() => {
      client.connect();
    }, 0);
    const retry = () => {
      client.reconnectNow();
    };
    window.addEventListener('online', retry);
    return () => {
      clearTimeout(start);
      window.removeEventListener('online', retry);
      client.disconnect();
    };
  }, [client]);

  // ---- a new token from the embedding app (a new `#token=…`): refresh the session with it
  useEffect(() => {
    if (auth.token !== null) client.setToken(auth.token);
  }, [client, auth.token]);

  // ---- expiry: at each message's expires_at its text leaves memory, the
  // page, the live region and the notification showing it
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout>;
    const sweep = () => {
      client.pruneExpired();
      const now = client.serverNow();
      traces.sweep(now);
      // +1: wake just after the expiry, not a hair before it.
      const next = Math.min(SWEEP_MS, client.nextExpiryIn() + 1, traces.nextExpiry() - now + 1);
      timer = setTimeout(sweep, Math.max(0, next));
    };
    const clear = () => {
      traces.clear();
    };
    sweep();
    // Closing the tab must not leave notifications behind either.
    window.addEventListener('pagehide', clear);
    return () => {
      clearTimeout(timer);
      window.removeEventListener('pagehide', clear);
      clear();
    };
  }, [client, traces]);

  // ---- events from the client
  const onMessage = useEffectEvent((message: ChatMessage) => {
    if (message.own) return;
    const inActive = message.room === client.getState().activeRoom;
    const words = bodyWords(message.body);
    const spoken = inActive ? `${message.user.name}: ${words}` : `${message.user.name} in #${message.room}: ${words}`;
    traces.announce(spoken, message.expires_at);
    if (notifyOn && document.hidden) {
      // A private room's text stays out of the system's notification centre.
      const isPrivate = client.getState().rooms.some((r) => r.id === message.room && r.key !== null);
      const tag = `room-${message.room}`;
      const notification = showNotification(
        `${message.user.name} in #${message.room}`,
        isPrivate ? 'New end-to-end encrypted message' : words,
        tag,
        () => {
          client.setActiveRoom(message.room);
        },
      );
      if (notification !== null) traces.notified(tag, notification, message.expires_at);
    }
  });

  useEffect(() => {
    const offMessage = client.on('message', ({ message }) => {
      onMessage(message);
    });
    const offError = client.on('error', (err) => {
      pushToast(makeToast(err.code, err.message, titleFor(err, err.room === undefined ? 'other' : 'join')));
    });
    const offWelcome = client.on('welcome', ({ self }) => {
      storage.addSelfId(self.id);
    });
    return () => {
      offMessage();
      offError();
      offWelcome();
    };
  }, [client, pushToast]);

  // ---- remember rooms: plain ones, and private ones the user pinned (with their keys)
  const remembered = JSON.stringify(
    state.rooms.filter((r) => r.key === null || pinned.has(r.id)).map((r) => [r.id, r.key] as const),
  );
  useEffect(() => {
    const rooms = JSON.parse(remembered) as [string, string | null][];
    storage.setRooms(rooms.map(([id]) => id));
    storage.setRoomKeys(Object.fromEntries(rooms.filter((e): e is [string, string] => e[1] !== null)));
  }, [remembered]);

  // ---- URL ⇄ active room (a private room's key rides in the fragment)
  const activeKey = state.rooms.find((r) => r.id === state.activeRoom)?.key ?? null;
  useEffect(() => {
    const wanted = hashForRoom(state.activeRoom, activeKey);
    if (window.location.hash === wanted) return;
    const url = `${window.location.pathname}${state.activeRoom === null ? '' : wanted}`;
    const fromRoom = window.location.search === '' && window.location.hash.startsWith('#/room/');
    // Moving between rooms makes a history entry (Back returns to the last
    // room); anything else, such as a `?room=` link, is replaced.
    if (fromRoom) window.history.pushState(null, '', url);
    else window.history.replaceState(null, '', url);
  }, [state.activeRoom, activeKey]);

  const onHashChange = useEffectEvent(() => {
    if (!isRouteHash(window.location.hash)) return;
    const linked = linkFromUrl(window.location.hash, '');
    if (linked === null) {
      client.setActiveRoom(null);
      return;
    }
    const room = joinLink(client, linked, pushToast);
    if (room !== null) client.setActiveRoom(room);
  });

  useEffect(() => {
    const handler = () => {
      onHashChange();
    };
    window.addEventListener('popstate', handler);
    window.addEventListener('hashchange', handler);
    return () => {
      window.removeEventListener('popstate', handler);
      window.removeEventListener('hashchange', handler);
    };
  }, []);

  // ---- title shows unread messages
  const unread = state.rooms.reduce((n, r) => n + r.unread, 0);
  useEffect(() => {
    const room = state.activeRoom === null ? '' : `#${state.activeRoom} · `;
    document.title = `${unread > 0 ? `(${unread}) ` : ''}${room}WhisperRooms`;
  }, [unread, state.activeRoom]);

  // ---- actions
  const open = useCallback(
    (room: string, key: string | null): string | null => {
      try {
        client.join(room, key);
      } catch (e) {
        if (e instanceof ChatError) return e.message;
        throw e;
      }
      client.setActiveRoom(room);
      return null;
    },
    [client],
  );

  const joinRoom = useCallback(
    (input: string): string | null => {
      const link = linkFromText(input);
      const room = normalizeRoomId(link?.room ?? input);
      if (room === null) {
        return input.trim() === '' ? 'Type a room name first.' : describeError('invalid_room');
      }
      const key = link?.key ?? null;
      const known = client.getState().rooms.some((r) => r.id === room);
      if (key === null && !known && client.getState().features.encryptionRequired) {
        return 'This server carries only private rooms: create one, or paste a private room’s link.';
      }
      return open(room, key);
    },
    [client, open],
  );

  const newPrivateRoom = useCallback((): string | null => open(newPrivateRoomId(), newRoomKey()), [open]);

  const selectRoom = useCallback(
    (room: string | null) => {
      client.setActiveRoom(room);
    },
    [client],
  );

  const setPinned = useCallback((room: string, on: boolean) => {
    setPinnedRooms((set) => {
      const next = new Set(set);
      if (on) next.add(room);
      else next.delete(room);
      return next;
    });
  }, []);

  const leaveRoom = useCallback(
    (room: string) => {
      const { rooms, activeRoom } = client.getState();
      setPinned(room, false);
      client.leave(room);
      if (activeRoom === room) {
        const i = rooms.findIndex((r) => r.id === room);
        const next = rooms[i + 1] ?? rooms[i - 1];
        client.setActiveRoom(next?.id ?? null);
      }
    },
    [client, setPinned],
  );

  const send = useCallback(
    (room: string, text: string, ttlMs: number | null): boolean => {
      try {
        client.send(room, text, ttlMs);
        return true;
      } catch (e) {
        if (!(e instanceof ChatError)) throw e;
        pushToast(makeToast(e.code, e.message, titleFor(e, 'send')));
        return false;
      }
    },
    [client, pushToast],
  );

  const retry = useCallback(
    (room: string, cid: string) => {
      client.retry(room, cid);
    },
    [client],
  );

  const discard = useCallback(
    (room: string, cid: string) => {
      client.discard(room, cid);
    },
    [client],
  );

  const reconnectNow = useCallback(() => {
    client.reconnectNow();
  }, [client]);

  const dismissToast = useCallback((id: number) => {
    setToasts((list) => list.filter((t) => t.id !== id));
  }, []);

  const setNotifications = useCallback(async (on: boolean) => {
    if (!on) {
      storage.setNotify(false);
      setNotifyOn(false);
      return;
    }
    const granted = await ensureNotificationPermission();
    storage.setNotify(granted);
    setNotifyOn(granted);
    setDenied(notificationPermission() === 'denied');
  }, []);

  return {
    state,
    toasts,
    announcements,
    notifications: { supported: notificationPermission() !== 'unsupported', enabled: notifyOn, denied },
    encryption: encryptionAvailable(),
    pinned,
    joinRoom,
    newPrivateRoom,
    selectRoom,
    leaveRoom,
    setPinned,
    send,
    retry,
    discard,
    reconnectNow,
    dismissToast,
    setNotifications,
  };
}
