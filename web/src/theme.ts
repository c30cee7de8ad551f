/**
 * Light and dark themes follow `prefers-color-scheme` unless the user picks
 * one; the choice is the `data-theme` attribute on <html> (see styles/theme.css).
 */
import { storage } from './storage.ts';

export type ThemeChoice = 'system' | 'light' | 'dark';

export const THEME_CHOICES: readonly ThemeChoice[] = ['system', 'light', 'dark'];

export function loadTheme(): ThemeChoice {
  const saved = storage.theme();
  return saved === 'light' || saved === 'dark' ? saved : 'system';
}

export function applyTheme(choice: ThemeChoice): void {
  const root = document.documentElement;
  if (choice === 'system') delete root.dataset.theme;
  else root.dataset.theme = choice;
  storage.setTheme(choice === 'system' ? null : choice);
}
