"""Regenerates the client-sourced part of ingest/domain/forward_labels.json from two public localisation
sources, so every label and separator in the table names the file (and commit) it was read from:

* Thunderbird: `<locale>/mail/chrome/messenger/mimeheader.properties` (the labels of the header block
  Thunderbird writes into an inline forward: FROM, DATE, SUBJECT, TO, CC, REPLY-TO, SENDER) and
  `<locale>/mail/chrome/messenger/messengercompose/composeMsgs.properties`
  (`mailnews.forward_header_originalmessage`, the forward separator; `mailnews.reply_header_originalmessage`,
  the "Original Message" one) of thunderbird/thunderbird-l10n.
* Roundcube: `program/localization/<locale>/labels.inc` (`from`, `date`, `subject`, `to`, `cc`, `replyto`,
  `originalmessage`) of roundcube/roundcubemail, which `program/actions/mail/compose.php`
  (`get_forward_header`) writes as `-------- <originalmessage> --------` then `Label: value` lines (text) or
  `<th>Label: </th><td>value</td>` rows (HTML).

* Android's stock Email app (AOSP `platform/packages/apps/Email`, the base of many OEM mail apps):
  `res/values-<locale>/strings.xml` `message_compose_fwd_header_fmt`, the whole forward header
  (`-------- Original Message --------` then Subject/From/To/CC lines) per locale.

    python services/ingest/tools/extract_forward_labels.py THUNDERBIRD_L10N_GIT ROUNDCUBE_GIT AOSP_EMAIL_GIT

(bare or normal git checkouts; reads HEAD). The hand-curated entries (source "reference ...") already in the
JSON file are kept; the entries of these two clients are replaced.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

TABLE = Path(__file__).parents[1] / "ingest" / "domain" / "forward_labels.json"

# locale directory → language key of the table (one key per UI language; regional variants merged)
THUNDERBIRD_LOCALES = {
    "ar": "ar", "bg": "bg", "ca": "ca", "cs": "cs", "da": "da", "de": "de", "el": "el", "es-ES": "es", "es-AR": "es",
    "es-MX": "es", "et": "et", "fa": "fa", "fi": "fi", "fr": "fr", "he": "he", "hr": "hr", "hu": "hu", "id": "id",
    "it": "it", "ja": "ja", "ko": "ko", "lt": "lt", "lv": "lv", "ms": "ms", "nb-NO": "nb", "nn-NO": "nb", "nl": "nl",
    "pa-IN": "pa", "pl": "pl", "pt-BR": "pt", "pt-PT": "pt", "ro": "ro", "ru": "ru", "sk": "sk", "sl": "sl",
    "sr": "sr", "sv-SE": "sv", "th": "th", "tr": "tr", "uk": "uk", "vi": "vi", "zh-CN": "zh", "zh-TW": "zh",
    "bs": "bs", "mk": "mk", "sq": "sq", "is": "is", "gl": "gl", "eu": "eu", "ka": "ka", "kk": "kk", "uz": "uz",
}
ROUNDCUBE_LOCALES = {
    "ar": "ar", "ar_SA": "ar", "bg_BG": "bg", "bn_BD": "bn", "ca_ES": "ca", "cs_CZ": "cs", "da_DK": "da",
    "de_DE": "de", "el_GR": "el", "es_ES": "es", "es_419": "es", "et_EE": "et", "fa_IR": "fa", "fi_FI": "fi",
    "fr_FR": "fr", "he_IL": "he", "hi_IN": "hi", "hr_HR": "hr", "hu_HU": "hu", "id_ID": "id", "it_IT": "it",
    "ja_JP": "ja", "kn_IN": "kn", "ko_KR": "ko", "lt_LT": "lt", "lv_LV": "lv", "ml_IN": "ml", "mr_IN": "mr",
    "ms_MY": "ms", "nb_NO": "nb", "ne_NP": "ne", "nl_NL": "nl", "pl_PL": "pl", "pt_BR": "pt", "pt_PT": "pt",
    "ro_RO": "ro", "ru_RU": "ru", "si_LK": "si", "sk_SK": "sk", "sl_SI": "sl", "sr_CS": "sr", "sv_SE": "sv",
    "ta_IN": "ta", "th_TH": "th", "tr_TR": "tr", "uk_UA": "uk", "ur_PK": "ur", "vi_VN": "vi", "zh_CN": "zh",
    "zh_TW": "zh", "bs_BA": "bs", "mk_MK": "mk", "sq_AL": "sq", "is_IS": "is", "gl_ES": "gl", "eu_ES": "eu",
    "ka_GE": "ka", "az_AZ": "az", "km_KH": "km", "mn_MN": "mn", "ps": "ps", "ku": "ku",
}
TB_FIELDS = {"FROM": "from", "SENDER": "sender", "DATE": "date", "SUBJECT": "subject", "TO": "to", "CC": "cc",
             "REPLY-TO": "reply_to"}
RC_FIELDS = {"from": "from", "date": "date", "subject": "subject", "to": "to", "cc": "cc", "replyto": "reply_to"}


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False).stdout


def properties(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def phrase(separator: str) -> str:
    return separator.strip().strip("-").strip()


def thunderbird(repo: str) -> tuple[list[dict], list[dict]]:
    commit = git(repo, "rev-parse", "HEAD").strip()
    labels, separators = [], []
    for locale, lang in THUNDERBIRD_LOCALES.items():
        header_file = f"{locale}/mail/chrome/messenger/mimeheader.properties"
        compose_file = f"{locale}/mail/chrome/messenger/messengercompose/composeMsgs.properties"
        header = properties(git(repo, "show", f"HEAD:{header_file}"))
        for key, field in TB_FIELDS.items():
            if header.get(key):
                labels.append({"langs": [lang], "field": field, "label": header[key].strip().rstrip(":").strip(),
                               "clients": ["Thunderbird"],
                               "source": f"thunderbird/thunderbird-l10n@{commit[:12]} {header_file} {key}"})
        compose = properties(git(repo, "show", f"HEAD:{compose_file}"))
        for key, kind in (("mailnews.forward_header_originalmessage", "forward"),
                          ("mailnews.reply_header_originalmessage", "original")):
            if compose.get(key) and phrase(compose[key]):
                separators.append({"langs": [lang], "kind": kind, "phrase": phrase(compose[key]),
                                   "clients": ["Thunderbird"],
                                   "source": f"thunderbird/thunderbird-l10n@{commit[:12]} {compose_file} {key}"})
    return labels, separators


_RC_LABEL = re.compile(r"^\$labels\['(?P<key>\w+)'\]\s*=\s*'(?P<value>(?:[^'\\]|\\.)*)';", re.M)


def roundcube(repo: str) -> tuple[list[dict], list[dict]]:
    commit = git(repo, "rev-parse", "HEAD").strip()
    labels, separators = [], []
    for locale, lang in ROUNDCUBE_LOCALES.items():
        path = f"program/localization/{locale}/labels.inc"
        values = {m.group("key"): m.group("value").replace("\\'", "'")
                  for m in _RC_LABEL.finditer(git(repo, "show", f"HEAD:{path}"))}
        for key, field in RC_FIELDS.items():
            if values.get(key):
                labels.append({"langs": [lang], "field": field, "label": values[key].strip().rstrip(":").strip(),
                               "clients": ["Roundcube"],
                               "source": f"roundcube/roundcubemail@{commit[:12]} {path} $labels['{key}']"})
        if values.get("originalmessage"):
            separators.append({"langs": [lang], "kind": "original", "phrase": values["originalmessage"],
                               "clients": ["Roundcube"],
                               "source": f"roundcube/roundcubemail@{commit[:12]} {path} $labels['originalmessage']"})
    return labels, separators


# values-<code> → language key (Android's old codes: iw = he, in = id; regions merged)
AOSP_RENAMED = {"iw": "he", "in": "id", "tl": "fil"}
AOSP_FIELDS = {"SUBJECT": "subject", "SENDER": "from", "TO": "to", "CC_0": "cc", "subject": "subject",
               "sender": "from", "to": "to", "cc": "cc"}
_AOSP_STRING = re.compile(r'<string name="message_compose_fwd_header_fmt"[^>]*>(?P<value>.*?)</string>', re.S)
_AOSP_LINE = re.compile(r'^(?P<label>[^<]+?)\s*:\s*<xliff:g id="?(?P<id>\w+)')


def aosp(repo: str) -> tuple[list[dict], list[dict]]:
    commit = git(repo, "rev-parse", "HEAD").strip()
    labels, separators = [], []
    folders = [line.rpartition("/")[2] for line in git(repo, "ls-tree", "--name-only", "HEAD", "res/").split()]
    for folder in folders:
        if not folder.startswith("values-") or folder.startswith(("values-en", "values-v", "values-w", "values-ldrtl")):
            continue
        code = folder.removeprefix("values-").split("-r")[0]
        lang = AOSP_RENAMED.get(code, code)
        path = f"res/{folder}/strings.xml"
        match = _AOSP_STRING.search(git(repo, "show", f"HEAD:{path}"))
        if not match:
            continue
        text = match.group("value").replace("\\n", "\n").replace('"', "")
        source = f"aosp-mirror/platform_packages_apps_email@{commit[:12]} {path} message_compose_fwd_header_fmt"
        for line in text.split("\n"):
            line = line.strip().strip("\u200e\u200f")
            found = _AOSP_LINE.match(line)
            if found and found.group("id") in AOSP_FIELDS:
                labels.append({"langs": [lang], "field": AOSP_FIELDS[found.group("id")],
                               "label": found.group("label").strip().strip("\u200e\u200f"),
                               "clients": ["Android Email (AOSP)"], "source": source})
            elif line.startswith("-") and phrase(line):
                separators.append({"langs": [lang], "kind": "original", "phrase": phrase(line),
                                   "clients": ["Android Email (AOSP)"], "source": source})
    return labels, separators


def merge(entries: list[dict], key: tuple[str, ...]) -> list[dict]:
    """One entry per (lang, field/kind, label): the clients and sources of duplicates joined."""
    merged: dict[tuple, dict] = {}
    for entry in entries:
        k = tuple(tuple(entry[name]) if isinstance(entry[name], list) else entry[name] for name in key)
        if k in merged:
            for client in entry["clients"]:
                if client not in merged[k]["clients"]:
                    merged[k]["clients"].append(client)
            if entry["source"] not in merged[k]["source"]:
                merged[k]["source"] += "; " + entry["source"]
        else:
            merged[k] = {**entry, "clients": list(entry["clients"])}
    return list(merged.values())


def main(argv: list[str]) -> int:
    thunderbird_repo, roundcube_repo, aosp_repo = argv
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    kept_labels = [e for e in table["labels"]
                   if not e["source"].startswith(("thunderbird/", "roundcube/", "aosp-mirror/"))]
    kept_separators = [e for e in table["separators"]
                       if not e["source"].startswith(("thunderbird/", "roundcube/", "aosp-mirror/"))]
    tb_labels, tb_separators = thunderbird(thunderbird_repo)
    rc_labels, rc_separators = roundcube(roundcube_repo)
    an_labels, an_separators = aosp(aosp_repo)
    table["labels"] = kept_labels + merge(tb_labels + rc_labels + an_labels, ("langs", "field", "label"))
    table["separators"] = kept_separators + merge(tb_separators + rc_separators + an_separators,
                                                  ("langs", "kind", "phrase"))
    TABLE.write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(table['labels'])} labels, {len(table['separators'])} separators")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
