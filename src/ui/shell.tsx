// The frame around every signed-in page (Mantine AppShell): a header with the menu button on phones, the language
// and account menus; the navigation, beside the page from the `sm` breakpoint up and behind the burger below it.
import { ActionIcon, AppShell, Burger, Center, Group, Loader, Menu, NavLink, Text } from '@mantine/core';
import { useDisclosure } from '@mantine/hooks';
import { Suspense, useEffect } from 'react';
import { session } from './api.ts';
import { LogoutIcon, UserIcon } from './components/icons.tsx';
import { LanguageMenu } from './components/language-menu.tsx';
import { useI18n } from './i18n/context.tsx';
import { routesFor } from './pages/routes.ts';
import { useZoneName } from './settings-store.ts';
import { navigate, usePath } from './router.ts';
import type { Session } from './session.ts';

function AccountMenu({ user }: { user: Session['user'] }) {
  const { t } = useI18n();
  return (
    <Menu position="bottom-end" withinPortal withInitialFocusPlaceholder={false}>
      <Menu.Target>
        <ActionIcon variant="subtle" color="gray" size="lg" aria-label={`${t('shell.account')}: ${user.name}`}>
          <UserIcon />
        </ActionIcon>
      </Menu.Target>
      <Menu.Dropdown>
        <Menu.Label>{t('shell.signed_in_as', { user: user.name })}</Menu.Label>
        <Menu.Label>{t(`role.${user.role}`)}</Menu.Label>
        <Menu.Divider />
        <Menu.Item leftSection={<LogoutIcon size={16} />} onClick={() => void session.logout()}>
          {t('shell.logout')}
        </Menu.Item>
      </Menu.Dropdown>
    </Menu>
  );
}

export function Shell({ user }: { user: Session['user'] }) {
  const { t } = useI18n();
  const [opened, { toggle, close }] = useDisclosure(false);
  const path = usePath();
  const routes = routesFor(user.role);
  const route = routes.find((r) => r.path === path);
  const zoneName = useZoneName();

  useEffect(() => {
    if (!route) navigate('/', { replace: true });
  }, [route]);
  useEffect(() => {
    document.title = route ? `${t(route.label)} · ${t('app.name')}` : t('app.name');
  }, [route, t]);

  return (
    <AppShell header={{ height: 56 }} navbar={{ width: 240, breakpoint: 'sm', collapsed: { mobile: !opened } }} padding="md">
      <a className="bk-skip-link" href="#main">{t('app.skip')}</a>
      <AppShell.Header>
        <Group h="100%" px="md" justify="space-between" wrap="nowrap">
          <Group gap="sm" wrap="nowrap">
            <Burger opened={opened} onClick={toggle} hiddenFrom="sm" size="sm" aria-label={t('shell.menu')} aria-expanded={opened} aria-controls="bk-nav" />
            <Text fw={800} size="lg" c="var(--bk-brand)">{t('app.name')}</Text>
            {zoneName ? (
              <Text size="sm" c="dimmed" truncate="end" maw={{ base: 120, sm: 320 }} data-testid="zone-name">
                {zoneName}
              </Text>
            ) : null}
          </Group>
          <Group gap={4} wrap="nowrap">
            <LanguageMenu />
            <AccountMenu user={user} />
          </Group>
        </Group>
      </AppShell.Header>
      <AppShell.Navbar p="sm" id="bk-nav" aria-label={t('shell.navigation')} data-open={opened}>
        {routes.map((r) => (
          <NavLink
            key={r.path}
            href={r.path}
            label={t(r.label)}
            leftSection={<r.icon size={18} />}
            active={r.path === path}
            aria-current={r.path === path ? 'page' : undefined}
            onClick={(e) => {
              e.preventDefault();
              navigate(r.path);
              close();
            }}
          />
        ))}
      </AppShell.Navbar>
      <AppShell.Main id="main" tabIndex={-1}>
        <Suspense
          fallback={
            <Center mih={200}>
              <Loader aria-label={t('app.loading')} />
            </Center>
          }
        >
          {route ? <route.page /> : null}
        </Suspense>
      </AppShell.Main>
    </AppShell>
  );
}
