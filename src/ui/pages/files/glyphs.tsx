// The files page's own glyphs, inline SVG like components/icons.tsx (24-unit grid, stroked, in the text colour).
// Decorative: the control or row around each one carries the words.
import type { ReactNode } from 'react';

function Glyph({ size = 24, children }: { size?: number; children: ReactNode }) {
  return (
    <svg width={size} height={size} viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth={1.8} strokeLinecap="round" strokeLinejoin="round" aria-hidden="true" focusable="false">
      {children}
    </svg>
  );
}

type Props = { size?: number };

export const FolderGlyph = ({ size }: Props) => (
  <Glyph size={size}>
    <path d="M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2z" />
  </Glyph>
);

export const FileGlyph = ({ size }: Props) => (
  <Glyph size={size}>
    <path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z" />
    <path d="M14 3v5h5" />
  </Glyph>
);

export const UploadGlyph = ({ size }: Props) => (
  <Glyph size={size}>
    <path d="M12 16V4" />
    <path d="M7 9l5-5 5 5" />
    <path d="M4 20h16" />
  </Glyph>
);

export const SearchGlyph = ({ size = 18 }: Props) => (
  <Glyph size={size}>
    <circle cx="11" cy="11" r="7" />
    <path d="M20 20l-4-4" />
  </Glyph>
);

export const MoreGlyph = ({ size = 20 }: Props) => (
  <Glyph size={size}>
    <circle cx="5" cy="12" r="1" />
    <circle cx="12" cy="12" r="1" />
    <circle cx="19" cy="12" r="1" />
  </Glyph>
);
