/**
 * What the page remembers between visits, in localStorage. Every access is
 * guarded: storage can be disabled, full, or hold junk from another version.
 */
const KEYS = {
  name: 'whisperrooms.name',
  rooms: 'whisperrooms.rooms',
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
