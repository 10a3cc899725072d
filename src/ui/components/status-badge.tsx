// A state in words with a colour, never colour alone; every tone meets AA contrast in both colour schemes (the
// variables in styles.css), as the dashboard's badges do.
import { Badge } from '@mantine/core';
import type { ReactNode } from 'react';

export type Tone = 'ok' | 'warn' | 'bad' | 'neutral';

const TONES: Record<Tone, { variant: 'outline' | 'filled'; color: string }> = {
  ok: { variant: 'outline', color: 'var(--bk-ok)' },
  neutral: { variant: 'outline', color: 'var(--bk-neutral)' },
  bad: { variant: 'filled', color: 'red.9' },
  warn: { variant: 'filled', color: 'yellow.5' },
};

export function StatusBadge({ tone, children }: { tone: Tone; children: ReactNode }) {
  return (
    <Badge {...TONES[tone]} autoContrast radius="sm" style={{ flexShrink: 0 }}>
      {children}
    </Badge>
  );
}
