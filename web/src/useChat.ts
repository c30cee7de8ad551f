/**
 * useChat: the bridge between one ChatClient and React.
 *
 * Owns what is about the page rather than the protocol: the URL (current
 * room), what localStorage remembers (rooms, own user ids), toasts, screen
 * reader announcements, desktop notifications and the expiry sweep.
 */
import { useCallback, useEffect, useEffectEvent, useState, useSyncExternalStore } from 'react';
import { ChatClient, type ChatMessage, type ChatState } from './client.ts';
import { ChatError, describeError } from './errors.ts';
import { ensureNotificationPermission, notificationPermission, showNotification } from './notifications.ts';
import { WS_PATH, normalizeRoomId } from './protocol.ts';
import { hashForRoom, isRouteHash, roomFromUrl } from './route.ts';
import { storage } from './storage.ts';

export interface Toast {
  id: number;
  code: string;
  title: string;
  message: string;
}

export interface Announcement {
  id: number;
  text: string;
}

export interface ChatApi {
  state: ChatState;
  toasts: readonly Toast[];
  announcements: readonly Announcement[];
  notifications: { supported: boolean; enabled: boolean; denied: boolean };
  /** Joins (or switches to) the room typed by the user; returns an error to show inline, or null. */
  joinRoom: (input: string) => string | null;
  selectRoom: (room: string | null) => void;
  leaveRoom: (room: string) => void;
  /** Resolves true when the gateway acked the message (clear the box), false otherwise. */
  send: (room: string, text: string) => Promise<boolean>;
  reconnectNow: () => void;
  dismissToast: (id: number) => void;
  setNotifications: (on: boolean) => Promise<void>;
}

const MAX_TOASTS = 4;
const MAX_ANNOUNCEMENTS = 5;

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
  if (context === 'send') return 'Message not sent';
  if (context === 'join' && err.room !== undefined) return `Could not join #${err.room}`;
  return 'Something went wrong';
}

interface Setup {
  client: ChatClient;
  toasts: Toast[];
}

/** Builds the client and reads what the URL and storage ask for. No I/O happens here. */
function setup(name: string): Setup {
  const client = new ChatClient({ url: socketUrl(window.location), name, selfIds: storage.selfIds() });
  const toasts: Toast[] = [];
  const saved = storage.rooms();
  for (const room of saved) {
    try {
      client.join(room);
    } catch {
      // A stale or tampered entry: skip it.
    }
  }
  let active = saved.find((r) => client.getState().rooms.some((x) => x.id === r)) ?? null;
  const linked = roomFromUrl(window.location.hash, window.location.search);
  if (linked !== null) {
    const room = normalizeRoomId(linked);
    if (room === null) {
      toasts.push(makeToast('invalid_room', describeError('invalid_room'), `The link names no valid room (“${linked}”)`));
    } else {
      try {
        client.join(room);
        active = room;
      } catch (e) {
        if (e instanceof ChatError) toasts.push(makeToast(e.code, e.message, `Could not join #${room}`));
      }
    }
  }
  client.setActiveRoom(active);
  return { client, toasts };
}

export function useChat(name: string): ChatApi {
  const [{ client, toasts: initialToasts }] = useState(() => setup(name));
  const state = useSyncExternalStore(client.subscribe, client.getState);
  const [toasts, setToasts] = useState<readonly Toast[]>(initialToasts);
  const [announcements, setAnnouncements] = useState<readonly Announcement[]>([]);
  const [notifyOn, setNotifyOn] = useState(() => storage.notify() && notificationPermission() === 'granted');
  const [denied, setDenied] = useState(() => notificationPermission() === 'denied');

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

  // ---- expired messages leave memory too (the list hides them on time anyway)
  useEffect(() => {
    const timer = setInterval(() => client.pruneExpired(), 1000);
    return () => {
      clearInterval(timer);
    };
  }, [client]);

  // ---- events from the client
  const onMessage = useEffectEvent((message: ChatMessage) => {
    if (message.own) return;
    const inActive = message.room === client.getState().activeRoom;
    const text = message.text.length > 280 ? `${message.text.slice(0, 280)}…` : message.text;
    const spoken = inActive ? `${message.user.name}: ${text}` : `${message.user.name} in #${message.room}: ${text}`;
    setAnnouncements((list) => [...list, { id: nextId++, text: spoken }].slice(-MAX_ANNOUNCEMENTS));
    if (notifyOn && document.hidden) {
      showNotification(`${message.user.name} in #${message.room}`, text, `room-${message.room}`, () => {
        client.setActiveRoom(message.room);
      });
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

  // ---- remember rooms
  const roomKey = state.rooms.map((r) => r.id).join('\n');
  useEffect(() => {
    storage.setRooms(roomKey === '' ? [] : roomKey.split('\n'));
  }, [roomKey]);

  // ---- URL ⇄ active room
  useEffect(() => {
    const wanted = hashForRoom(state.activeRoom);
    if (window.location.hash === wanted) return;
    const url = `${window.location.pathname}${state.activeRoom === null ? '' : wanted}`;
    const fromRoom = window.location.search === '' && window.location.hash.startsWith('#/room/');
    // Moving between rooms makes a history entry (Back returns to the last
    // room); anything else, such as a `?room=` link, is replaced.
    if (fromRoom) window.history.pushState(null, '', url);
    else window.history.replaceState(null, '', url);
  }, [state.activeRoom]);

  const onHashChange = useEffectEvent(() => {
    if (!isRouteHash(window.location.hash)) return;
    const linked = roomFromUrl(window.location.hash, '');
    if (linked === null) {
      client.setActiveRoom(null);
      return;
    }
    const room = normalizeRoomId(linked);
    if (room === null) {
      pushToast(makeToast('invalid_room', describeError('invalid_room'), `The link names no valid room (“${linked}”)`));
      return;
    }
    try {
      client.join(room);
      client.setActiveRoom(room);
    } catch (e) {
      if (e instanceof ChatError) pushToast(makeToast(e.code, e.message, `Could not join #${room}`));
    }
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
  const joinRoom = useCallback(
    (input: string): string | null => {
      const room = normalizeRoomId(input);
      if (room === null) {
        return input.trim() === '' ? 'Type a room name first.' : describeError('invalid_room');
      }
      try {
        client.join(room);
      } catch (e) {
        if (e instanceof ChatError) return e.message;
        throw e;
      }
      client.setActiveRoom(room);
      return null;
    },
    [client],
  );

  const selectRoom = useCallback(
    (room: string | null) => {
      client.setActiveRoom(room);
    },
    [client],
  );

  const leaveRoom = useCallback(
    (room: string) => {
      const { rooms, activeRoom } = client.getState();
      client.leave(room);
      if (activeRoom === room) {
        const i = rooms.findIndex((r) => r.id === room);
        const next = rooms[i + 1] ?? rooms[i - 1];
        client.setActiveRoom(next?.id ?? null);
      }
    },
    [client],
  );

  const send = useCallback(
    async (room: string, text: string): Promise<boolean> => {
      try {
        await client.send(room, text);
        return true;
      } catch (e) {
        if (!(e instanceof ChatError)) throw e;
        pushToast(makeToast(e.code, e.message, titleFor(e, 'send')));
        return false;
      }
    },
    [client, pushToast],
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
    joinRoom,
    selectRoom,
    leaveRoom,
    send,
    reconnectNow,
    dismissToast,
    setNotifications,
  };
}
