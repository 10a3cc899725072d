// A modal dialog, labelled by its title, as every page here uses it: the overlay covers the page, the page behind
// does not scroll, and focus stays trapped in the dialog.
import { Modal } from '@mantine/core';
import type { ReactNode } from 'react';

export function Dialog({ title, opened, onClose, closeLabel, children }: {
  title: string;
  opened: boolean;
  onClose(): void;
  /** The name of the close button (×). */
  closeLabel: string;
  children: ReactNode;
}) {
  return (
    <Modal opened={opened} onClose={onClose} title={title} centered closeButtonProps={{ 'aria-label': closeLabel }}>
      {children}
    </Modal>
  );
}
