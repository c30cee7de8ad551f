import { useEffect, useState } from 'react';

/** The local clock, re-read every `intervalMs` (aligned to whole ticks). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout>;
    const tick = () => {
      const t = Date.now();
      setNow(t);
      timer = setTimeout(tick, intervalMs - (t % intervalMs) + 5);
    };
    timer = setTimeout(tick, intervalMs - (Date.now() % intervalMs) + 5);
    return () => {
      clearTimeout(timer);
    };
  }, [intervalMs]);
  return now;
}
