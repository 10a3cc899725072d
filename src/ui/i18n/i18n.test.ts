// The language rules, and the catalogues' agreement: every language has every key (the type checker sees to that)
// with the same placeholders, so no message loses a value in translation.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOGUES, LANGS, detectLang, fill, translator } from './i18n.ts';
import { EN_PARTS, en } from './en.ts';

const placeholders = (s: string) => [...s.matchAll(/\{([a-z_]+)\}/g)].map((m) => m[1]).sort();

describe('i18n', () => {
  it('prefers a stored choice, then the browser\'s languages in order, then English', () => {
    assert.equal(detectLang('zh', ['en-US']), 'zh');
    assert.equal(detectLang('fr', ['fr-FR', 'zh-TW', 'en']), 'zh');
    assert.equal(detectLang(null, ['zh-Hans-CN']), 'zh');
    assert.equal(detectLang(null, ['de', 'en-GB']), 'en');
    assert.equal(detectLang(null, []), 'en');
  });

  it('fills placeholders and leaves a missing one visible', () => {
    assert.equal(fill('{a} of {b}', { a: 1, b: 'two' }), '1 of two');
    assert.equal(fill('{a} and {missing}', { a: 'x' }), 'x and {missing}');
    assert.equal(translator('zh')('login.rate_limited', { seconds: 5 }), '此处的登录尝试过多，请在 5 秒后重试。');
  });

  it('gives every language every message, non-empty, with the English placeholders', () => {
    for (const lang of LANGS) {
      for (const [key, text] of Object.entries(en)) {
        const translated = CATALOGUES[lang][key as keyof typeof en];
        assert.ok(translated.trim(), `${lang} ${key} is empty`);
        assert.deepEqual(placeholders(translated), placeholders(text), `${lang} ${key}`);
      }
    }
  });

  it('keeps each page\'s keys to itself: no two parts of the catalogue share a key', () => {
    const owner = new Map<string, string>();
    for (const [part, messages] of Object.entries(EN_PARTS)) {
      for (const key of Object.keys(messages)) {
        assert.equal(owner.get(key), undefined, `${key} is in both ${owner.get(key)} and ${part}`);
        owner.set(key, part);
      }
    }
  });
});
