// Personal Station: the person's files on the zone (dcfs-lite). Their home folder and the shared /public folder with
// breadcrumbs, uploads of files and whole folders with progress that resume after an interruption, downloads,
// previews (images, video, audio, text, PDF), thumbnails drawn from the files, search under the open folder, new
// folders, rename, move, delete to the trash (and back, or for good), and older versions. Every form checks the
// name first and says beside the field what is wrong; model.ts holds the rules, transfer.ts moves the bytes,
// thumbs.ts draws thumbnails. docs/ui-files.md.
import {
  ActionIcon, Alert, Box, Button, Group, Loader, Menu, Modal, NativeSelect, Paper, Progress, Skeleton, Stack, Tabs, Text, TextInput, Title,
  UnstyledButton,
} from '@mantine/core';
import { useMediaQuery } from '@mantine/hooks';
import { type FormEvent, type ReactNode, useCallback, useEffect, useMemo, useRef, useState, useSyncExternalStore } from 'react';
import type { DfsEntry } from '../../../lib/api/dfs.ts';
import { KrpcError } from '../../../lib/krpc/errors.ts';
import { api, session } from '../../api.ts';
import { useI18n } from '../../i18n/context.tsx';
import type { MessageKey } from '../../i18n/en.ts';
import { formatBytes, formatTime } from '../../format.ts';
import { servicePlaced } from '../dashboard/model.ts';
import { FileGlyph, FolderGlyph, MoreGlyph, SearchGlyph, UploadGlyph } from './glyphs.tsx';
import {
  type NameProblem, type PickedFile, type Root, TEXT_PREVIEW_BYTES, baseName, checkMoveTarget, checkName, crumbs, explainFileError, folderFromQuery,
  folderUrl, homeOf, joinPath, parentOf, planUpload, previewOf, rootOf, rootPath, sortEntries, thumbKind, utf8Bytes,
} from './model.ts';
import { keptThumbnail, thumbnail } from './thumbs.ts';
import { download, fetchBlob } from './transfer.ts';
import { type Transfer, uploads } from './uploads.ts';

type Notice = { tone: 'ok' | 'bad'; key: MessageKey; params?: Record<string, string | number> };
type Tab = Root | 'trash';

/** Media past this size is not previewed (it would be fetched whole first): it is downloaded instead. */
const PREVIEW_MAX_BYTES = 512 * 1024 * 1024;

function NoticeBar({ notice, onClose }: { notice: Notice | null; onClose(): void }) {
  const { t } = useI18n();
  if (!notice) return null;
  return (
    <Alert color={notice.tone === 'ok' ? 'teal' : 'red'} variant="light" role={notice.tone === 'ok' ? 'status' : 'alert'} withCloseButton closeButtonLabel={t('files.close')} onClose={onClose}>
      {t(notice.key, notice.params)}
    </Alert>
  );
}

function Dialog({ title, onClose, children, size }: { title: string; onClose(): void; children: ReactNode; size?: string }) {
  const { t } = useI18n();
  const phone = useMediaQuery('(max-width: 36em)');
  return (
    <Modal opened onClose={onClose} title={title} centered size={size} fullScreen={phone && size === 'xl'} closeButtonProps={{ 'aria-label': t('files.close') }}>
      {children}
    </Modal>
  );
}

/** A form with one text field: new folder, rename, move. `check` finds problems before sending; `send` may fail
 * with a refusal, shown beside the field when it is about the name, above it otherwise. */
function FieldDialog({ title, label, hint, initial, submit, check, send, onClose }: {
  title: string;
  label: string;
  hint?: string;
  initial: string;
  submit: string;
  check(value: string): NameProblem | null;
  send(value: string): Promise<void>;
  onClose(): void;
}) {
  const { t } = useI18n();
  const [value, setValue] = useState(initial);
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const [formProblem, setFormProblem] = useState<NameProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  const go = async (ev: FormEvent) => {
    ev.preventDefault();
    const found = check(value);
    setProblem(found);
    setFormProblem(null);
    if (found) return input.current?.focus();
    setBusy(true);
    try {
      await send(value);
    } catch (e) {
      const p = explainFileError(e);
      if (p.key.startsWith('files.name.') || p.key.startsWith('files.move.')) {
        setProblem(p);
        input.current?.focus();
      } else setFormProblem(p);
    } finally {
      setBusy(false);
    }
  };

  return (
    <Dialog title={title} onClose={() => !busy && onClose()}>
      <form onSubmit={(e) => void go(e)} noValidate>
        <Stack gap="md">
          {formProblem ? <Alert color="red" variant="light" role="alert">{t(formProblem.key, formProblem.params)}</Alert> : null}
          <TextInput
            ref={input}
            data-autofocus
            label={label}
            description={hint}
            required
            autoComplete="off"
            autoCapitalize="none"
            spellCheck={false}
            value={value}
            onChange={(e) => setValue(e.currentTarget.value)}
            error={problem ? t(problem.key, problem.params) : undefined}
            aria-invalid={problem ? true : undefined}
          />
          <Group justify="flex-end" gap="sm">
            <Button variant="default" onClick={onClose} disabled={busy}>{t('files.cancel')}</Button>
            <Button type="submit" loading={busy}>{submit}</Button>
          </Group>
        </Stack>
      </form>
    </Dialog>
  );
}

function ConfirmDialog({ title, text, submit, danger, send, onClose }: { title: string; text: string; submit: string; danger?: boolean; send(): Promise<void>; onClose(): void }) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const go = async () => {
    setBusy(true);
    try {
      await send();
    } catch (e) {
      setProblem(explainFileError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <Dialog title={title} onClose={() => !busy && onClose()}>
      <Stack gap="md">
        {problem ? <Alert color="red" variant="light" role="alert">{t(problem.key, problem.params)}</Alert> : null}
        <Text size="sm">{text}</Text>
        <Group justify="flex-end" gap="sm">
          <Button variant="default" onClick={onClose} disabled={busy} data-autofocus>{t('files.cancel')}</Button>
          <Button color={danger ? 'red.9' : undefined} loading={busy} onClick={() => void go()}>{submit}</Button>
        </Group>
      </Stack>
    </Dialog>
  );
}

/** A file shown in the page from a blob it fetched with the token, typed by the page (model.ts previewOf). */
function PreviewDialog({ volume, entry, version, onClose, onDownload }: { volume: string; entry: DfsEntry; version?: string; onClose(): void; onDownload(): void }) {
  const { t, locale } = useI18n();
  const name = baseName(entry.path);
  const kind = previewOf(name);
  const [state, setState] = useState<{ url?: string; text?: string; cut?: boolean; error?: NameProblem; tooBig?: boolean }>({});

  useEffect(() => {
    if (!kind) return;
    const stop = new AbortController();
    let url: string | undefined;
    if (kind.kind !== 'text' && entry.size > PREVIEW_MAX_BYTES) {
      setState({ tooBig: true });
      return;
    }
    (async () => {
      if (kind.kind === 'text') {
        const blob = entry.size === 0 ? new Blob([]) : await fetchBlob(volume, entry.path, { version, maxBytes: TEXT_PREVIEW_BYTES, signal: stop.signal });
        setState({ text: await blob.text(), cut: entry.size > TEXT_PREVIEW_BYTES });
      } else {
        const blob = await fetchBlob(volume, entry.path, { version, type: kind.mime, signal: stop.signal });
        url = URL.createObjectURL(blob);
        setState({ url });
      }
    })().catch((e: unknown) => {
      if (!stop.signal.aborted) setState({ error: explainFileError(e) });
    });
    return () => {
      stop.abort();
      if (url) URL.revokeObjectURL(url);
    };
  }, [volume, entry.path, entry.size, version, kind]);

  let body: ReactNode;
  if (!kind) body = <Text>{t('files.preview.none')}</Text>;
  else if (state.tooBig) body = <Text>{t('files.preview.too_big')}</Text>;
  else if (state.error) body = <Alert color="red" variant="light" role="alert">{t(state.error.key, state.error.params)}</Alert>;
  else if (state.text !== undefined) {
    body = (
      <Stack gap="xs">
        {state.cut ? <Text size="sm" c="dimmed">{t('files.preview.cut', { size: formatBytes(TEXT_PREVIEW_BYTES, locale) })}</Text> : null}
        <Box component="pre" tabIndex={0} aria-label={t('files.preview.text_label', { name })} data-preview="text"
          style={{ maxHeight: '70vh', overflow: 'auto', whiteSpace: 'pre-wrap', wordBreak: 'break-word', margin: 0, padding: 'var(--mantine-spacing-sm)', fontSize: 'var(--mantine-font-size-sm)', background: 'var(--mantine-color-default-hover)', borderRadius: 'var(--mantine-radius-sm)' }}>
          {state.text}
        </Box>
      </Stack>
    );
  } else if (!state.url) body = <Group justify="center" p="xl"><Loader aria-label={t('files.preview.loading')} /></Group>;
  else if (kind.kind === 'image') body = <img src={state.url} alt={name} data-preview="image" style={{ display: 'block', maxWidth: '100%', maxHeight: '75vh', margin: '0 auto' }} />;
  else if (kind.kind === 'video') body = <video src={state.url} controls playsInline aria-label={name} data-preview="video" style={{ display: 'block', width: '100%', maxHeight: '75vh' }} />;
  else if (kind.kind === 'audio') body = <audio src={state.url} controls aria-label={name} data-preview="audio" style={{ width: '100%' }} />;
  else body = <iframe src={state.url} title={name} data-preview="pdf" style={{ width: '100%', height: '75vh', border: 0 }} />;

  return (
    <Dialog title={name} onClose={onClose} size="xl">
      <Stack gap="md">
        {body}
        <Group justify="flex-end">
          <Button variant="default" onClick={onDownload}>{t('files.action.download')}</Button>
        </Group>
      </Stack>
    </Dialog>
  );
}

function VersionsDialog({ volume, entry, onClose, onChanged, onPreview }: { volume: string; entry: DfsEntry; onClose(): void; onChanged(n: Notice): void; onPreview(version: string): void }) {
  const { t, locale, timeZone } = useI18n();
  const name = baseName(entry.path);
  const [versions, setVersions] = useState<{ version_id: string; size: number; mtime: number; author: string }[] | null>(null);
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  useEffect(() => {
    api.dfs.versions({ volume, path: entry.path }).then((r) => setVersions(r.versions), (e: unknown) => setProblem(explainFileError(e)));
  }, [volume, entry.path]);

  const restore = async (id: string, mtime: number) => {
    setBusy(`restore-${id}`);
    try {
      await api.dfs.restore_version({ volume, path: entry.path, version_id: id });
      onChanged({ tone: 'ok', key: 'files.versions.restored', params: { name, time: formatTime(mtime, locale, timeZone) } });
    } catch (e) {
      setProblem(explainFileError(e));
    } finally {
      setBusy(null);
    }
  };
  const save = async (id: string) => {
    setBusy(`download-${id}`);
    try {
      await download(volume, entry.path, name, id);
    } catch (e) {
      setProblem(explainFileError(e));
    } finally {
      setBusy(null);
    }
  };

  return (
    <Dialog title={t('files.versions.title', { name })} onClose={onClose}>
      <Stack gap="sm">
        {problem ? <Alert color="red" variant="light" role="alert">{t(problem.key, problem.params)}</Alert> : null}
        <Text size="sm" c="dimmed">{t('files.versions.explain')}</Text>
        {versions === null ? (problem ? null : <Skeleton height={60} />) : (
          <Stack component="ul" className="bk-plain-list" gap="xs" aria-label={t('files.versions.list', { name })}>
            {versions.map((v, i) => {
              const when = formatTime(v.mtime, locale, timeZone);
              return (
                <Paper component="li" withBorder p="xs" key={v.version_id} data-version={v.version_id}>
                  <Stack gap={6}>
                    <div>
                      <Text size="sm" fw={500}>{i === 0 ? t('files.versions.current', { time: when }) : when}</Text>
                      <Text size="xs" c="dimmed">{t('files.versions.meta', { size: formatBytes(v.size, locale), author: v.author })}</Text>
                    </div>
                    <Group gap="xs" role="group" aria-label={t('files.versions.actions', { time: when })}>
                      {previewOf(name) ? <Button size="xs" variant="default" onClick={() => onPreview(v.version_id)}>{t('files.action.preview')}</Button> : null}
                      <Button size="xs" variant="default" loading={busy === `download-${v.version_id}`} onClick={() => void save(v.version_id)}>{t('files.action.download')}</Button>
                      {i > 0 ? <Button size="xs" variant="default" loading={busy === `restore-${v.version_id}`} onClick={() => void restore(v.version_id, v.mtime)}>{t('files.versions.restore')}</Button> : null}
                    </Group>
                  </Stack>
                </Paper>
              );
            })}
          </Stack>
        )}
      </Stack>
    </Dialog>
  );
}

function Thumb({ volume, entry }: { volume: string; entry: DfsEntry }) {
  const box = useRef<HTMLDivElement>(null);
  const [url, setUrl] = useState<string | null>(() => keptThumbnail(entry.content_id));
  const wants = thumbKind(entry) !== null;
  useEffect(() => {
    const kept = keptThumbnail(entry.content_id);
    setUrl(kept);
    const el = box.current;
    if (kept || !wants || !el) return;
    let live = true;
    // Drawn when the row comes into view: a long folder does not download every picture at once.
    const io = new IntersectionObserver((seen) => {
      if (!seen.some((s) => s.isIntersecting)) return;
      io.disconnect();
      void thumbnail(volume, entry).then((u) => live && setUrl(u));
    }, { rootMargin: '200px' });
    io.observe(el);
    return () => {
      live = false;
      io.disconnect();
    };
  }, [volume, entry, wants]);
  return (
    <Box ref={box} w={48} h={48} aria-hidden
      style={{ flex: 'none', display: 'flex', alignItems: 'center', justifyContent: 'center', overflow: 'hidden', borderRadius: 'var(--mantine-radius-sm)', background: 'var(--mantine-color-default-hover)', color: 'var(--bk-neutral)' }}>
      {url ? <img src={url} alt="" data-thumb="drawn" style={{ width: '100%', height: '100%', objectFit: 'cover' }} />
        : entry.type === 'dir' ? <FolderGlyph /> : <FileGlyph />}
    </Box>
  );
}

type EntryAction = 'preview' | 'download' | 'rename' | 'move' | 'versions' | 'delete';

function EntryRow({ volume, entry, showFolder, menuOpen, onMenu, onOpen, onAction }: {
  volume: string;
  entry: DfsEntry;
  showFolder?: boolean;
  /** Whether this entry's menu is open: held by the folder view, which keeps the rows still under an open menu. */
  menuOpen: boolean;
  onMenu(open: boolean): void;
  onOpen(): void;
  onAction(a: EntryAction): void;
}) {
  const { t, locale, timeZone } = useI18n();
  const name = baseName(entry.path);
  const file = entry.type === 'file';
  const details = [file ? formatBytes(entry.size, locale) : t('files.folder'), formatTime(entry.mtime, locale, timeZone)];
  if (showFolder) details.push(t('files.search.in', { folder: parentOf(entry.path) }));
  return (
    <Paper component="li" withBorder p="xs" data-entry={name} data-type={entry.type}>
      <Group wrap="nowrap" gap="sm">
        <Thumb volume={volume} entry={entry} />
        <Box style={{ flex: 1, minWidth: 0 }}>
          <UnstyledButton onClick={onOpen} aria-label={t(file ? 'files.open_file' : 'files.open_folder', { name })} style={{ maxWidth: '100%' }}>
            <Text fw={500} truncate="end">{name}</Text>
          </UnstyledButton>
          <Text size="xs" c="dimmed" truncate="end">{details.join(' · ')}</Text>
        </Box>
        <Menu position="bottom-end" withinPortal withInitialFocusPlaceholder={false} opened={menuOpen} onChange={onMenu}>
          <Menu.Target>
            <ActionIcon variant="subtle" color="gray" size="lg" aria-label={t('files.actions_for', { name })}>
              <MoreGlyph />
            </ActionIcon>
          </Menu.Target>
          <Menu.Dropdown>
            {file && previewOf(name) ? <Menu.Item onClick={() => onAction('preview')}>{t('files.action.preview')}</Menu.Item> : null}
            {file ? <Menu.Item onClick={() => onAction('download')}>{t('files.action.download')}</Menu.Item> : null}
            <Menu.Item onClick={() => onAction('rename')}>{t('files.action.rename')}</Menu.Item>
            <Menu.Item onClick={() => onAction('move')}>{t('files.action.move')}</Menu.Item>
            {file ? <Menu.Item onClick={() => onAction('versions')}>{t('files.action.versions')}</Menu.Item> : null}
            <Menu.Item color="var(--bk-bad-text)" onClick={() => onAction('delete')}>{t('files.action.delete')}</Menu.Item>
          </Menu.Dropdown>
        </Menu>
      </Group>
    </Paper>
  );
}

function TransferRow({ x, onCancel, onResume }: { x: Transfer; onCancel(): void; onResume(): void }) {
  const { t, locale } = useI18n();
  const name = baseName(x.path);
  const pct = x.file.size === 0 ? (x.state === 'done' ? 100 : 0) : Math.round((x.sent / x.file.size) * 100);
  return (
    <Paper component="li" withBorder p="xs" data-upload={name} data-state={x.state}>
      <Stack gap={6}>
        <Group justify="space-between" wrap="nowrap" gap="xs">
          <Text size="sm" fw={500} truncate="end" style={{ minWidth: 0 }}>{name}</Text>
          <Group gap={6} wrap="nowrap">
            {x.state === 'interrupted' ? <Button size="compact-xs" variant="default" onClick={onResume}>{t('files.upload.resume')}</Button> : null}
            {x.state === 'queued' || x.state === 'uploading' || x.state === 'interrupted' ? (
              <Button size="compact-xs" variant="subtle" color="gray" onClick={onCancel} aria-label={t('files.upload.cancel_named', { name })}>{t('files.cancel')}</Button>
            ) : null}
          </Group>
        </Group>
        <Progress value={pct} size="sm" aria-label={t('files.upload.progress', { name })} color={x.state === 'failed' ? 'red.9' : undefined} />
        <Text size="xs" c={x.problem ? 'var(--bk-bad-text)' : 'dimmed'} role={x.problem ? 'alert' : undefined}>
          {x.problem ? t(x.problem.key, x.problem.params) : t(`files.upload.state.${x.state}`, { sent: formatBytes(x.sent, locale), size: formatBytes(x.file.size, locale), pct, from: formatBytes(x.resumedAt, locale) })}
          {x.state === 'uploading' && x.resumedAt > 0 ? ` ${t('files.upload.resumed', { from: formatBytes(x.resumedAt, locale) })}` : ''}
        </Text>
      </Stack>
    </Paper>
  );
}

function Breadcrumbs({ path, user, onOpen }: { path: string; user: string; onOpen(p: string): void }) {
  const { t } = useI18n();
  const list = crumbs(path, user);
  return (
    <nav aria-label={t('files.crumbs')}>
      <Group component="ol" gap={4} className="bk-plain-list" wrap="wrap">
        {list.map((c, i) => {
          const label = c.root ? t(c.root === 'home' ? 'files.root.home' : 'files.root.public') : c.name;
          const last = i === list.length - 1;
          return (
            <Group component="li" gap={4} key={c.path} wrap="nowrap">
              {i > 0 ? <Text c="dimmed" aria-hidden>/</Text> : null}
              {last ? <Text fw={600} aria-current="location">{label}</Text> : (
                <UnstyledButton onClick={() => onOpen(c.path)} px={4} style={{ borderRadius: 'var(--mantine-radius-sm)' }}>
                  <Text c="var(--bk-brand)" td="underline">{label}</Text>
                </UnstyledButton>
              )}
            </Group>
          );
        })}
      </Group>
    </nav>
  );
}

type Dialogs =
  | { kind: 'mkdir' }
  | { kind: 'rename' | 'move' | 'delete' | 'versions'; entry: DfsEntry }
  | { kind: 'preview'; entry: DfsEntry; version?: string }
  | { kind: 'purge'; item: TrashItem };

type TrashItem = { trash_id: string; path: string; type: 'file' | 'dir'; size: number; deleted_at: number; deleted_by: string };

function TrashView({ volume, onNotice }: { volume: string; onNotice(n: Notice): void }) {
  const { t, locale, timeZone } = useI18n();
  const [items, setItems] = useState<TrashItem[] | null>(null);
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const [purging, setPurging] = useState<TrashItem | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const load = useCallback(() => {
    api.dfs.trash_list({ volume }).then(
      (r) => {
        setItems([...r.items].sort((a, b) => b.deleted_at - a.deleted_at));
        setProblem(null);
      },
      (e: unknown) => setProblem(explainFileError(e)),
    );
  }, [volume]);
  useEffect(load, [load]);

  const restore = async (item: TrashItem) => {
    setBusy(item.trash_id);
    try {
      await api.dfs.restore({ volume, trash_id: item.trash_id });
      onNotice({ tone: 'ok', key: 'files.trash.restored', params: { name: baseName(item.path), folder: parentOf(item.path) } });
      load();
    } catch (e) {
      const p = explainFileError(e);
      onNotice({ tone: 'bad', key: p.key === 'files.name.taken' ? 'files.trash.restore_taken' : p.key, params: { name: baseName(item.path), ...p.params } });
    } finally {
      setBusy(null);
    }
  };

  return (
    <Stack gap="sm">
      <Text size="sm" c="dimmed">{t('files.trash.explain')}</Text>
      {problem ? <Alert color="red" variant="light" role="alert">{t(problem.key, problem.params)}</Alert> : null}
      {items === null ? (problem ? null : <Skeleton height={60} />) : items.length === 0 ? <Text>{t('files.trash.empty')}</Text> : (
        <Stack component="ul" className="bk-plain-list" gap="xs" aria-label={t('files.trash.list')}>
          {items.map((it) => {
            const name = baseName(it.path);
            return (
              <Paper component="li" withBorder p="xs" key={it.trash_id} data-trash={name}>
                <Group wrap="nowrap" gap="sm" align="flex-start">
                  <Box c="var(--bk-neutral)" pt={4} aria-hidden>{it.type === 'dir' ? <FolderGlyph /> : <FileGlyph />}</Box>
                  <Box style={{ flex: 1, minWidth: 0 }}>
                    <Text fw={500} truncate="end">{name}</Text>
                    <Text size="xs" c="dimmed">{t('files.trash.meta', { folder: parentOf(it.path), time: formatTime(it.deleted_at, locale, timeZone), size: formatBytes(it.size, locale) })}</Text>
                    <Group gap="xs" mt={6} role="group" aria-label={t('files.actions_for', { name })}>
                      <Button size="xs" variant="default" loading={busy === it.trash_id} onClick={() => void restore(it)}>{t('files.trash.restore')}</Button>
                      <Button size="xs" variant="outline" color="var(--bk-bad-text)" onClick={() => setPurging(it)}>{t('files.trash.purge')}</Button>
                    </Group>
                  </Box>
                </Group>
              </Paper>
            );
          })}
        </Stack>
      )}
      {purging ? (
        <ConfirmDialog
          title={t('files.trash.purge_title', { name: baseName(purging.path) })}
          text={t('files.trash.purge_explain')}
          submit={t('files.trash.purge')}
          danger
          onClose={() => setPurging(null)}
          send={async () => {
            await api.dfs.trash_purge({ volume, trash_id: purging.trash_id });
            setPurging(null);
            onNotice({ tone: 'ok', key: 'files.trash.purged', params: { name: baseName(purging.path) } });
            load();
          }}
        />
      ) : null}
    </Stack>
  );
}

function SearchForm({ dir, onSearch, onClear, active }: { dir: string; onSearch(q: string): Promise<void>; onClear(): void; active: boolean }) {
  const { t } = useI18n();
  const [query, setQuery] = useState('');
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const go = async (ev: FormEvent) => {
    ev.preventDefault();
    const found: NameProblem | null = query.trim() === '' ? { key: 'files.search.empty' }
      : utf8Bytes(query) > 255 ? { key: 'files.search.too_long', params: { max: 255 } }
        : /[\u0000-\u001f\u007f]/.test(query) ? { key: 'files.search.invalid' } : null;
    setProblem(found);
    if (found) return input.current?.focus();
    setBusy(true);
    try {
      await onSearch(query);
    } catch (e) {
      setProblem(explainFileError(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form onSubmit={(e) => void go(e)} noValidate role="search">
      <Stack gap="xs">
        <TextInput
          ref={input}
          label={t('files.search.label')}
          description={t('files.search.hint', { folder: dir })}
          leftSection={<SearchGlyph />}
          type="search"
          autoComplete="off"
          value={query}
          onChange={(e) => setQuery(e.currentTarget.value)}
          error={problem ? t(problem.key, problem.params) : undefined}
          aria-invalid={problem ? true : undefined}
        />
        <Group gap="xs">
          <Button type="submit" loading={busy} variant="light">{t('files.search.submit')}</Button>
          {active ? <Button variant="default" onClick={() => { setQuery(''); setProblem(null); onClear(); }}>{t('files.search.clear')}</Button> : null}
        </Group>
      </Stack>
    </form>
  );
}

function FolderView({ volume, root, user, onNotice }: { volume: string; root: Root; user: string; onNotice(n: Notice | null): void }) {
  const { t, locale } = useI18n();
  const [dir, setDir] = useState(() => {
    const fromUrl = folderFromQuery(window.location.search, user);
    return fromUrl && rootOf(fromUrl, user) === root ? fromUrl : rootPath(root, user);
  });
  const [entries, setEntries] = useState<DfsEntry[] | null>(null);
  const [problem, setProblem] = useState<NameProblem | null>(null);
  const [results, setResults] = useState<{ query: string; entries: DfsEntry[]; truncated: boolean } | null>(null);
  const [dialog, setDialog] = useState<Dialogs | null>(null);
  const transfers = useSyncExternalStore(uploads.subscribe, uploads.snapshot);
  const [usage, setUsage] = useState<{ used_bytes: number; quota_bytes: number | null } | null>(null);
  const [uploadProblem, setUploadProblem] = useState<NameProblem | null>(null);
  const filesInput = useRef<HTMLInputElement>(null);
  const folderInput = useRef<HTMLInputElement>(null);

  const open = useCallback((path: string, push = true) => {
    setDir(path);
    setResults(null);
    if (push) window.history.pushState(null, '', folderUrl(path, user));
  }, [user]);

  useEffect(() => {
    const back = () => {
      const p = folderFromQuery(window.location.search, user);
      if (p && rootOf(p, user) === root) open(p, false);
    };
    window.addEventListener('popstate', back);
    return () => window.removeEventListener('popstate', back);
  }, [open, root, user]);

  // Loads overlap (every finished upload asks for the folder again, and the person may have opened another folder
  // meanwhile): only the last one asked is shown, so an older answer, perhaps another folder's, never replaces it.
  const asked = useRef(0);
  const load = useCallback(async () => {
    const mine = ++asked.current;
    try {
      const [list, use] = await Promise.all([api.dfs.list({ volume, path: dir }), api.dfs.usage({ volume })]);
      if (mine !== asked.current) return;
      setEntries(sortEntries(list.entries, locale));
      setUsage(use);
      setProblem(null);
    } catch (e) {
      if (mine !== asked.current) return;
      setEntries([]);
      setProblem(explainFileError(e));
    }
  }, [volume, dir, locale]);
  useEffect(() => {
    setEntries(null);
    void load();
  }, [load]);

  const names = useMemo(() => (entries ?? []).map((e) => baseName(e.path)), [entries]);

  // Whatever folder an upload went to, the one shown may have changed (a new file, a new version, the space used).
  useEffect(() => uploads.onFinished(() => void load()), [load]);

  const pick = async (list: FileList | null) => {
    setUploadProblem(null);
    if (!list || list.length === 0) return;
    const files = [...list];
    const picked: PickedFile[] = files.map((f) => ({ name: f.name, relative: f.webkitRelativePath, size: f.size, lastModified: f.lastModified }));
    const plan = planUpload(picked, dir);
    if (plan.refused.length > 0) {
      const first = plan.refused[0]!;
      return setUploadProblem({ key: 'files.upload.refused_name', params: { name: first.name, why: t(first.problem.key, first.problem.params) } });
    }
    // The zone checks the quota again; checking here first keeps a refused upload from starting at all. Asked
    // afresh: an administrator may have changed the quota since the folder was shown.
    const total = picked.reduce((n, f) => n + f.size, 0);
    const use = await api.dfs.usage({ volume }).catch(() => usage);
    if (use) setUsage(use);
    if (use?.quota_bytes != null && use.used_bytes + total > use.quota_bytes) {
      return setUploadProblem({ key: 'files.error.quota_upload', params: { size: formatBytes(total, locale), free: formatBytes(Math.max(0, use.quota_bytes - use.used_bytes), locale) } });
    }
    try {
      for (const folder of plan.folders) await api.dfs.mkdir({ volume, path: folder, parents: true });
    } catch (e) {
      return setUploadProblem(explainFileError(e));
    }
    uploads.add(plan.files.map(({ index, path }) => ({ volume, path, file: files[index]! })));
    if (plan.folders.length > 0) void load();
  };

  const act = async (entry: DfsEntry, a: EntryAction) => {
    if (a === 'download') {
      try {
        await download(volume, entry.path, baseName(entry.path));
      } catch (e) {
        const p = explainFileError(e);
        onNotice({ tone: 'bad', key: p.key, params: p.params });
      }
      return;
    }
    setDialog(a === 'preview' ? { kind: 'preview', entry } : { kind: a, entry });
  };

  const done = (n: Notice) => {
    setDialog(null);
    onNotice(n);
    setResults(null);
    void load();
  };

  const openEntry = (e: DfsEntry) => {
    if (e.type === 'dir') open(e.path);
    else if (previewOf(baseName(e.path))) setDialog({ kind: 'preview', entry: e });
    else void act(e, 'download');
  };

  const fresh = results ? results.entries : entries;
  // An open entry menu holds the rows as they were when it opened: a refresh landing meanwhile (an upload finished)
  // would otherwise insert or drop rows above it and move the menu, with its row, from under the pointer, so that a
  // click meant for one item lands on another item or on another file's row. The refresh shows when the menu
  // closes. The menu closes at once when its file is no longer listed, or when another folder or list is shown.
  const [menu, setMenu] = useState<{ path: string; rows: DfsEntry[]; dir: string; searching: boolean } | null>(null);
  const menuLost = menu !== null && (menu.dir !== dir || menu.searching !== (results !== null) || !fresh?.some((e) => e.path === menu.path));
  useEffect(() => {
    if (menuLost) setMenu(null);
  }, [menuLost]);
  const shown = menu && !menuLost ? menu.rows : fresh;
  /** What a menu item acts on: the file as last listed, found by its path (the row shown may be older). */
  const actFromMenu = (path: string, a: EntryAction) => {
    const entry = fresh?.find((e) => e.path === path);
    if (entry) void act(entry, a);
  };
  const quota = usage?.quota_bytes ?? null;

  return (
    <Stack gap="md">
      <Breadcrumbs path={dir} user={user} onOpen={(p) => open(p)} />
      <Group gap="xs" wrap="wrap">
        <Button leftSection={<FolderGlyph size={18} />} variant="default" onClick={() => setDialog({ kind: 'mkdir' })}>{t('files.mkdir')}</Button>
        <Button leftSection={<UploadGlyph size={18} />} onClick={() => filesInput.current?.click()}>{t('files.upload.files')}</Button>
        <Button leftSection={<UploadGlyph size={18} />} variant="light" onClick={() => folderInput.current?.click()}>{t('files.upload.folder')}</Button>
        <input ref={filesInput} type="file" multiple hidden data-pick="files" onChange={(e) => { void pick(e.currentTarget.files); e.currentTarget.value = ''; }} />
        <input
          ref={(el) => {
            folderInput.current = el;
            // Not in React's attribute list: every current browser takes it for picking a whole folder.
            el?.setAttribute('webkitdirectory', '');
          }}
          type="file" hidden data-pick="folder" onChange={(e) => { void pick(e.currentTarget.files); e.currentTarget.value = ''; }}
        />
      </Group>
      {uploadProblem ? <Alert color="red" variant="light" role="alert" data-problem="upload">{t(uploadProblem.key, uploadProblem.params)}</Alert> : null}
      {transfers.length > 0 ? (
        <section aria-labelledby="uploads-title">
          <Title order={2} size="h4" id="uploads-title" mb="xs">{t('files.upload.title')}</Title>
          <Stack component="ul" className="bk-plain-list" gap="xs">
            {transfers.map((x) => <TransferRow key={x.id} x={x} onCancel={() => void uploads.cancel(x.id)} onResume={() => uploads.resume(x.id)} />)}
          </Stack>
        </section>
      ) : null}
      <SearchForm
        dir={dir}
        active={results !== null}
        onClear={() => setResults(null)}
        onSearch={async (query) => {
          const r = await api.dfs.search({ volume, path: dir, query, limit: 200 });
          setResults({ query, entries: sortEntries(r.entries, locale), truncated: r.truncated });
        }}
      />
      <section aria-labelledby="listing-title" data-state={shown === null ? 'loading' : 'ready'}>
        <Title order={2} size="h4" id="listing-title" mb="xs">
          {results ? t('files.search.results', { query: results.query, count: results.entries.length }) : t('files.listing')}
        </Title>
        {results?.truncated ? <Text size="sm" c="dimmed" mb="xs">{t('files.search.truncated')}</Text> : null}
        {problem ? <Alert color="red" variant="light" role="alert" mb="xs">{t(problem.key, problem.params)}</Alert> : null}
        {shown === null ? <Skeleton height={120} /> : shown.length === 0 ? (
          problem ? null : <Text>{results ? t('files.search.none') : t('files.empty')}</Text>
        ) : (
          <Stack component="ul" className="bk-plain-list" gap="xs">
            {shown.map((e) => (
              <EntryRow key={e.path} volume={volume} entry={e} showFolder={results !== null}
                menuOpen={!menuLost && menu?.path === e.path}
                onMenu={(o) => setMenu((m) => (o ? { path: e.path, rows: shown, dir, searching: results !== null } : m?.path === e.path ? null : m))}
                onOpen={() => openEntry(e)} onAction={(a) => actFromMenu(e.path, a)} />
            ))}
          </Stack>
        )}
      </section>
      {usage ? (
        <Box>
          <Text size="sm" c="dimmed">
            {quota === null ? t('files.usage', { used: formatBytes(usage.used_bytes, locale) }) : t('files.usage_quota', { used: formatBytes(usage.used_bytes, locale), quota: formatBytes(quota, locale) })}
          </Text>
          {quota ? <Progress mt={4} size="sm" value={Math.min(100, (usage.used_bytes / quota) * 100)} aria-label={t('files.usage_label')} /> : null}
        </Box>
      ) : null}

      {dialog?.kind === 'mkdir' ? (
        <FieldDialog
          title={t('files.mkdir.title', { folder: baseName(dir) })}
          label={t('files.name')}
          initial=""
          submit={t('files.mkdir.submit')}
          check={(v) => checkName(v, dir, names)}
          send={async (v) => {
            const name = v.normalize('NFC');
            await api.dfs.mkdir({ volume, path: joinPath(dir, name), parents: false });
            done({ tone: 'ok', key: 'files.mkdir.done', params: { name } });
          }}
          onClose={() => setDialog(null)}
        />
      ) : null}
      {dialog?.kind === 'rename' ? (
        <FieldDialog
          title={t('files.rename.title', { name: baseName(dialog.entry.path) })}
          label={t('files.name')}
          initial={baseName(dialog.entry.path)}
          submit={t('files.rename.submit')}
          check={(v) => (v.normalize('NFC') === baseName(dialog.entry.path) ? { key: 'files.rename.same' } : checkName(v, parentOf(dialog.entry.path), parentOf(dialog.entry.path) === dir ? names : []))}
          send={async (v) => {
            const name = v.normalize('NFC');
            await api.dfs.rename({ volume, from: dialog.entry.path, to: joinPath(parentOf(dialog.entry.path), name), overwrite: false });
            done({ tone: 'ok', key: 'files.rename.done', params: { from: baseName(dialog.entry.path), name } });
          }}
          onClose={() => setDialog(null)}
        />
      ) : null}
      {dialog?.kind === 'move' ? (
        <FieldDialog
          title={t('files.move.title', { name: baseName(dialog.entry.path) })}
          label={t('files.move.to')}
          hint={t('files.move.hint', { home: homeOf(user) })}
          initial={parentOf(dialog.entry.path)}
          submit={t('files.move.submit')}
          check={(v) => checkMoveTarget(v, dialog.entry.path, user)}
          send={async (v) => {
            const to = v.trim().replace(/\/+$/, '');
            const target = await api.dfs.list({ volume, path: to }).catch((e: unknown) => {
              throw e instanceof KrpcError && e.code === 'NOT_FOUND' ? new KrpcError('NOT_FOUND', 'no such folder', { reason: 'MOVE_TARGET' }) : e;
            });
            const name = baseName(dialog.entry.path);
            if (target.entries.some((x) => baseName(x.path) === name)) throw new KrpcError('ALREADY_EXISTS', `${name} is taken there`);
            await api.dfs.rename({ volume, from: dialog.entry.path, to: joinPath(to, name), overwrite: false });
            done({ tone: 'ok', key: 'files.move.done', params: { name, folder: to } });
          }}
          onClose={() => setDialog(null)}
        />
      ) : null}
      {dialog?.kind === 'delete' ? (
        <ConfirmDialog
          title={t('files.delete.title', { name: baseName(dialog.entry.path) })}
          text={t(dialog.entry.type === 'dir' ? 'files.delete.explain_folder' : 'files.delete.explain')}
          submit={t('files.action.delete')}
          danger
          send={async () => {
            await api.dfs.delete({ volume, path: dialog.entry.path });
            done({ tone: 'ok', key: 'files.delete.done', params: { name: baseName(dialog.entry.path) } });
          }}
          onClose={() => setDialog(null)}
        />
      ) : null}
      {dialog?.kind === 'versions' ? (
        <VersionsDialog volume={volume} entry={dialog.entry} onClose={() => setDialog(null)} onChanged={done}
          onPreview={(version) => setDialog({ kind: 'preview', entry: dialog.entry, version })} />
      ) : null}
      {dialog?.kind === 'preview' ? (
        <PreviewDialog volume={volume} entry={dialog.entry} version={dialog.version} onClose={() => setDialog(null)}
          onDownload={() => void download(volume, dialog.entry.path, baseName(dialog.entry.path), dialog.version).catch((e: unknown) => {
            const p = explainFileError(e);
            onNotice({ tone: 'bad', key: p.key, params: p.params });
          })} />
      ) : null}
    </Stack>
  );
}

export default function FilesPage() {
  const { t } = useI18n();
  const user = session.get()?.user.name ?? '';
  const [volumes, setVolumes] = useState<string[] | null>(null);
  const [volume, setVolume] = useState<string | null>(null);
  const [unplaced, setUnplaced] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const [tab, setTab] = useState<Tab>(() => {
    const p = folderFromQuery(window.location.search, user);
    return (p ? rootOf(p, user) : null) ?? 'home';
  });

  useEffect(() => {
    (async () => {
      // Asked only where dfs runs: a zone without storage has none, and a call to it would be an error in the console.
      const services = await api.config.list({ prefix: 'services/dfs/', limit: 100 });
      if (!servicePlaced(services.entries, 'dfs')) return setUnplaced(true);
      const status = await api.dfs.status({});
      const names = status.volumes.map((v) => v.name);
      setVolumes(names);
      setVolume((v) => v ?? names[0] ?? null);
    })().catch((e: unknown) => setLoadError(e instanceof Error ? e.message : String(e)));
  }, []);

  const switchTab = (next: string | null) => {
    if (next !== 'home' && next !== 'public' && next !== 'trash') return;
    setTab(next);
    setNotice(null);
    window.history.replaceState(null, '', next === 'public' ? folderUrl('/public', user) : '/files');
  };

  const ready = volumes !== null || unplaced || loadError !== null;
  return (
    <Stack gap="lg" data-state={ready ? 'ready' : 'loading'}>
      <div>
        <Title order={1}>{t('nav.files')}</Title>
        <Text c="dimmed">{t('files.intro')}</Text>
      </div>
      {loadError ? <Alert color="red" variant="light" role="alert">{t('files.load_failed', { message: loadError })}</Alert> : null}
      {unplaced ? <Alert color="gray" variant="light">{t('files.no_storage')}</Alert> : null}
      {volumes !== null && volumes.length === 0 ? <Alert color="gray" variant="light">{t('files.no_volume')}</Alert> : null}
      {!ready ? <Skeleton height={160} /> : null}
      {volume && volumes ? (
        <>
          {volumes.length > 1 ? (
            <NativeSelect label={t('files.volume')} value={volume} onChange={(e) => setVolume(e.currentTarget.value)} data={volumes} maw={320} />
          ) : null}
          <NoticeBar notice={notice} onClose={() => setNotice(null)} />
          <Tabs value={tab} onChange={switchTab} keepMounted={false}>
            <Tabs.List>
              <Tabs.Tab value="home">{t('files.root.home')}</Tabs.Tab>
              <Tabs.Tab value="public">{t('files.root.public')}</Tabs.Tab>
              <Tabs.Tab value="trash">{t('files.trash')}</Tabs.Tab>
            </Tabs.List>
            <Tabs.Panel value="home" pt="md"><FolderView key={`home-${volume}`} volume={volume} root="home" user={user} onNotice={setNotice} /></Tabs.Panel>
            <Tabs.Panel value="public" pt="md"><FolderView key={`public-${volume}`} volume={volume} root="public" user={user} onNotice={setNotice} /></Tabs.Panel>
            <Tabs.Panel value="trash" pt="md"><TrashView key={volume} volume={volume} onNotice={setNotice} /></Tabs.Panel>
          </Tabs>
        </>
      ) : null}
    </Stack>
  );
}
