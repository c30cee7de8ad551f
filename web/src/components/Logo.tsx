export function LogoMark({ size = 28 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 64 64" aria-hidden="true" focusable="false" className="logo-mark">
      <rect width="64" height="64" rx="16" fill="var(--accent)" />
      <path
        d="M16 22a8 8 0 0 1 8-8h16a8 8 0 0 1 8 8v12a8 8 0 0 1-8 8H30l-9 7v-7h1a6 6 0 0 1-6-6z"
        fill="#fff"
        opacity=".95"
      />
      <circle cx="26" cy="28" r="2.6" fill="var(--accent)" />
      <circle cx="32" cy="28" r="2.6" fill="var(--accent)" opacity=".7" />
      <circle cx="38" cy="28" r="2.6" fill="var(--accent)" opacity=".4" />
    </svg>
  );
}

export function Logo() {
  return (
    <div className="logo">
      <LogoMark />
      <span className="logo-text">WhisperRooms</span>
    </div>
  );
}
