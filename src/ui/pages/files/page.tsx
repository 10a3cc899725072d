// Placeholder while the page is built: its title only.
import { Title } from '@mantine/core';
import { useI18n } from '../../i18n/context.tsx';

export default function Page() {
  const { t } = useI18n();
  return <Title order={1}>{t('nav.files')}</Title>;
}
