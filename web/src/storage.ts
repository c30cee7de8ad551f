/**
 * What the page remembers between visits, in localStorage. Every access is
 * guarded: storage can be disabled, full, or hold junk from another version.
 * Never message text; a private room's key only when the user pins the room.
 */
const KEYS = {
  name: 'whisperrooms.name',
  rooms: 'whisperrooms.rooms',
  roomKeys: 'whisperrooms.room-keys',
  selfIds: 'whisperrooms.self-ids',
  notify: 'whisperrooms.notify',
  theme: 'whisperrooms.theme',
} as const;

function read(key: string): string | null {
  try {
    return window.localStorage.getItem(key);
  } catch {
    return null;
  }
}

function write(key: string, value: string | null): void {
  try {
    if (value === null) window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, value);
  } catch {
    // Private mode or quota: remembering is a nicety, not a requirement.
  }
}

function readList(key: string): string[] {
  const raw = read(key);
  if (raw === null) return [];
  try {
    const value: unknown = JSON.parse(raw);
    return Array.isArray(value) ? value.filter((x): x is string => typeof x === 'string') : [];
  } catch {
    return [];
  }
}

export const storage = {
  name: (): string | null => read(KEYS.name),
  setName: (name: string | null): void => {
    write(KEYS.name, name);
  },

  rooms: (): string[] => readList(KEYS.rooms),
  setRooms: (rooms: readonly string[]): void => {
    write(KEYS.rooms, JSON.stringify(rooms));
  },

  /** Keys of the private rooms the user pinned, by room. */
  roomKeys: (): Record<string, string> => {
    const raw = read(KEYS.roomKeys);
    if (raw === null) return {};
    try {
      const value: unknown = JSON.parse(raw);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
      return Object.fromEntries(
        Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'),
      );
    } catch {
      return {};
    }
  },
  setRoomKeys: (keys: Readonly<Record<string, string>>): void => {
    write(KEYS.roomKeys, Object.keys(keys).length === 0 ? null : JSON.stringify(keys));
  },

  /** User ids this browser was given; messages from them are "own". */
  selfIds: (): string[] => readList(KEYS.selfIds),
  addSelfId: (id: string): void => {
    const ids = [id, ...readList(KEYS.selfIds).filter((x) => x !== id)].slice(0, 20);
    write(KEYS.selfIds, JSON.stringify(ids));
  },

  notify: (): boolean => read(KEYS.notify) === '1',
  setNotify: (on: boolean): void => {
    write(KEYS.notify, on ? '1' : null);
  },

  theme: (): string | null => read(KEYS.theme),
  setTheme: (theme: string | null): void => {
    write(KEYS.theme, theme);
  },
};
