# ruff: noqa: E501 - test data: long literal header lines are clearer unwrapped
"""Generate the HELD-OUT forward-detection evaluation set.

Written from /work/shared/reference/forward-formats.md only (sections 0-8 and the client sections
2.x / appendices), without looking at tests/forward_corpus, so that it does not share that corpus's
blind spots. Run from anywhere:

    python services/ingest/tests/forward_heldout/generate.py

It rewrites every `*.eml` file and `expected.json` in this folder (the generated files are
committed, tests do not regenerate them). Output is deterministic.

expected.json maps file name -> {"forward": bool, "email": str|None, "name": str (optional),
"category": str, "note": str (optional)}. "email" is the lower-cased address of the ORIGINAL
sender (None when the block carries only a name, or for negatives); "name" is only present where
the display name is clear, and is then compared case-insensitively with whitespace collapsed.
"""

from __future__ import annotations

import base64
import json
import quopri
from email.header import Header
from email.utils import formataddr
from pathlib import Path

HERE = Path(__file__).parent
FORWARDER = ("Sam Agent", "sam.agent@helpdesk-team.example")
INBOX = "support@mailroom-inbox.example"
CASES: dict[str, tuple[bytes, dict]] = {}
NBSP = "\u00a0"
BOM = "\ufeff"
TAB = "\t"


# --------------------------------------------------------------------------------------------
# MIME building
# --------------------------------------------------------------------------------------------

def _hdr(value: str) -> str:
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        return Header(value, "utf-8").encode()


def _addr(name: str | None, email: str) -> str:
    return formataddr((name, email), charset="utf-8") if name else email


def leaf(text: str, subtype: str = "plain", charset: str = "utf-8", cte: str | None = None,
         extra: str = "") -> bytes:
    data = text.encode(charset)
    if cte is None:
        cte = "7bit" if all(b < 128 for b in data) else "8bit"
    if cte == "quoted-printable":
        payload = quopri.encodestring(data)
    elif cte == "base64":
        payload = base64.encodebytes(data)
    else:
        payload = data
    head = f'Content-Type: text/{subtype}; charset="{charset}"\nContent-Transfer-Encoding: {cte}\n{extra}'
    return head.encode("ascii") + b"\n" + payload


def multipart(subtype: str, parts: list[bytes], boundary: str) -> bytes:
    out = [f'Content-Type: multipart/{subtype}; boundary="{boundary}"\n\n'.encode()]
    out.append(b"This is a multi-part message in MIME format.\n")
    for part in parts:
        out.append(f"\n--{boundary}\n".encode() + part.rstrip(b"\n") + b"\n")
    out.append(f"\n--{boundary}--\n".encode())
    return b"".join(out)


def message(subject: str, content: bytes, *, sender: tuple[str, str] = FORWARDER, extra: str = "",
            crlf: bool = False, n: int = 0, date: str = "Tue, 04 Mar 2025 10:15:00 +0100") -> bytes:
    head = (f"From: {_addr(*sender)}\nTo: {INBOX}\nSubject: {_hdr(subject)}\nDate: {date}\n"
            f"Message-ID: <heldout-{n}@helpdesk-team.example>\n"
            f"MIME-Version: 1.0\n{extra}")
    raw = head.encode("ascii") + content
    if crlf:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return raw


def add(fname: str, raw: bytes, *, forward: bool, email: str | None = None, name: str | None = None,
        category: str, note: str | None = None) -> None:
    assert fname not in CASES, fname
    exp: dict = {"forward": forward, "email": email.lower() if email else None, "category": category}
    if name is not None:
        exp["name"] = name
    if note:
        exp["note"] = note
    CASES[fname + ".eml"] = (raw, exp)


def plain(fname: str, subject: str, body: str, *, charset: str = "utf-8", cte: str | None = None,
          crlf: bool = False, extra: str = "", sender=FORWARDER, **exp) -> None:
    raw = message(subject, leaf(body, "plain", charset, cte), crlf=crlf, extra=extra, sender=sender,
                  n=len(CASES))
    add(fname, raw, **exp)


def html_only(fname: str, subject: str, html: str, *, charset: str = "utf-8", cte: str | None = None,
              **exp) -> None:
    add(fname, message(subject, leaf(html, "html", charset, cte), n=len(CASES)), **exp)


def alternative(fname: str, subject: str, text: str, html: str, *, charset: str = "utf-8",
                cte: str | None = None, **exp) -> None:
    content = multipart("alternative", [leaf(text, "plain", charset, cte), leaf(html, "html", charset, cte)],
                        f"alt-{len(CASES)}")
    add(fname, message(subject, content, n=len(CASES)), **exp)


def quote(text: str, depth: int = 1, space: bool = True) -> str:
    prefix = ">" * depth + (" " if space else "")
    return "\n".join((prefix + line) if line else ">" * depth for line in text.split("\n"))


# --------------------------------------------------------------------------------------------
# Per-locale material (reference section 3 tables)
# --------------------------------------------------------------------------------------------

# locale -> (original sender name, address, a body sentence in that language)
PEOPLE = {
    "en": ("Laura Singleton", "laura.singleton@dayrep-mail.com", "Please find the figures for Q3 below."),
    "de": ("Jürgen Müller", "j.mueller@beispiel-firma.de", "Anbei die Rechnung für März, bitte prüfen."),
    "fr": ("Amélie Dubois", "amelie.dubois@exemple-societe.fr", "Voici le devis demandé, à très bientôt."),
    "es": ("Iñigo Martínez", "inigo.martinez@empresa-ejemplo.es", "Le adjunto la factura de señal."),
    "it": ("Giulia Ricci", "giulia.ricci@esempio-azienda.it", "Ecco il preventivo più aggiornato."),
    "nl": ("Pieter de Vries", "pieter.devries@voorbeeld-bedrijf.nl", "Hierbij de offerte, groet."),
    "pt": ("João Gonçalves", "joao.goncalves@exemplo-empresa.pt", "Segue em anexo a proposta revista."),
    "pt_br": ("Luíza Araújo", "luiza.araujo@exemplo-loja.com.br", "Segue o orçamento que você pediu."),
    "sv": ("Åsa Lindqvist", "asa.lindqvist@exempel-bolag.se", "Här är offerten, hälsningar."),
    "da": ("Søren Kjær", "soren.kjaer@eksempel-firma.dk", "Her er tilbuddet på æbler."),
    "no": ("Øystein Bråten", "oystein.braten@eksempel-as.no", "Her er tilbudet, hilsen."),
    "fi": ("Päivi Mäkinen", "paivi.makinen@esimerkki-yhtio.fi", "Tässä pyytämäsi tarjous."),
    "pl": ("Łukasz Wójcik", "lukasz.wojcik@przyklad-firma.pl", "Przesyłam ofertę, pozdrawiam serdecznie."),
    "cs": ("Jiří Novák", "jiri.novak@priklad-firma.cz", "Posílám nabídku, děkuji za trpělivost."),
    "sk": ("Ľubica Horváthová", "lubica.horvathova@priklad-firma.sk", "Posielam ponuku, ďakujem."),
    "hu": ("Szőke Gábor", "gabor.szoke@pelda-ceg.hu", "Küldöm az árajánlatot, üdvözlettel."),
    "ro": ("Ștefan Popescu", "stefan.popescu@exemplu-firma.ro", "Vă trimit oferta, mulțumesc."),
    "hr": ("Ivana Kovačić", "ivana.kovacic@primjer-tvrtka.hr", "Šaljem ponudu, lijep pozdrav."),
    "ru": ("Дмитрий Иванов", "d.ivanov@primer-kompania.ru", "Пересылаю счёт, проверьте, пожалуйста."),
    "uk": ("Олена Коваленко", "olena.kovalenko@pryklad-firma.ua", "Надсилаю рахунок, дякую."),
    "tr": ("Çağlar Öztürk", "caglar.ozturk@ornek-sirket.com.tr", "Teklifi ekte gönderiyorum, iyi çalışmalar."),
    "et": ("Mari Tamm", "mari.tamm@naidis-firma.ee", "Saadan pakkumise, tervitustega."),
    "ja": ("山田太郎", "taro.yamada@rei-kaisha.co.jp", "お世話になっております。見積書を送付いたします。"),
    "zh": ("王小明", "xiaoming.wang@shili-gongsi.cn", "您好，附件是报价单，请查收。"),
    "zh_tw": ("陳大文", "dawen.chen@fanli-gongsi.com.tw", "您好，附件是報價單，請查收。"),
    "ko": ("김민준", "minjun.kim@yeshi-hoesa.co.kr", "안녕하세요, 견적서를 보내드립니다."),
}
TO_PERSON = ("Bessie Berry", "bessie.berry@helpdesk-team.example")
CC_PEOPLE = "Walter Sheltan <walter.sheltan@partner-org.example>, Nicholas <nicholas@globex-corp.example>"
CC_SEMI = "Walter Sheltan <walter.sheltan@partner-org.example>; Nicholas <nicholas@globex-corp.example>"
ORIG_SUBJECT = {
    "en": "Quarterly figures", "de": "Rechnung März", "fr": "Devis société", "es": "Factura pendiente",
    "it": "Preventivo aggiornato", "nl": "Offerte", "pt": "Proposta revista", "pt_br": "Orçamento",
    "sv": "Offert", "da": "Tilbud", "no": "Tilbud", "fi": "Tarjous", "pl": "Oferta", "cs": "Nabídka",
    "sk": "Ponuka", "hu": "Árajánlat", "ro": "Ofertă", "hr": "Ponuda", "ru": "Счёт на оплату",
    "uk": "Рахунок", "tr": "Teklif", "et": "Pakkumine", "ja": "見積書の送付", "zh": "报价单",
    "zh_tw": "報價單", "ko": "견적서",
}


def person(locale: str) -> tuple[str, str, str]:
    return PEOPLE[locale]


GMAIL_FROM = {"cs": "Od:", "da": "Fra:", "de": "Von:", "en": "From:", "es": "De:", "et": "Saatja:",
              "fi": "Lähettäjä:", "fr": "De :", "hr": "Šalje:", "hu": "Feladó:", "it": "Da:", "nl": "Van:",
              "no": "Fra:", "pl": "Od:", "pt": "De:", "pt_br": "De:", "ro": "De la:", "ru": "От:", "sk": "Od:",
              "sv": "Från:", "tr": "Gönderen:", "uk": "Від:"}
GMAIL_DATE = {"cs": "st 27. 10. 2021 v 9:31", "da": "ons. 27. okt. 2021 kl. 09.31",
              "de": "Mi., 27. Okt. 2021 um 09:31 Uhr", "en": "Wed, Oct 27, 2021 at 9:31 AM",
              "es": "mié, 27 oct 2021 a las 9:31", "et": "K, 27. oktoober 2021 kell 09:31",
              "fi": "ke 27. lokak. 2021 klo 9.31", "fr": "mer. 27 oct. 2021 à 09:31",
              "hr": "sri, 27. lis 2021. u 09:31", "hu": "2021. okt. 27., Sze, 9:31",
              "it": "mer 27 ott 2021 alle ore 09:31", "nl": "wo 27 okt. 2021 om 09:31",
              "no": "ons. 27. okt. 2021 kl. 09:31", "pl": "śr., 27 paź 2021 o 09:31",
              "pt": "quarta, 27/10/2021 à(s) 09:31", "pt_br": "qua., 27 de out. de 2021 às 09:31",
              "ro": "mie., 27 oct. 2021 la 09:31", "ru": "ср, 27 окт. 2021 г. в 09:31",
              "sk": "st 27. 10. 2021 o 9:31", "sv": "ons 27 okt. 2021 kl 09:31", "tr": "27 Eki 2021 Çar, 09:31",
              "uk": "ср, 27 жовт. 2021 о 09:31"}

# Apple Mail: separator, From, Subject, Date, To, Cc
APPLE = {
    "cs": ("Začátek přeposílané zprávy:", "Od:", "Předmět:", "Datum:", "Komu:", "Kopie:"),
    "da": ("Start på videresendt besked:", "Fra:", "Emne:", "Dato:", "Til:", "Cc:"),
    "de": ("Anfang der weitergeleiteten Nachricht:", "Von:", "Betreff:", "Datum:", "An:", "Kopie:"),
    "en": ("Begin forwarded message:", "From:", "Subject:", "Date:", "To:", "Cc:"),
    "es": ("Inicio del mensaje reenviado:", "De:", "Asunto:", "Fecha:", "Para:", "Cc:"),
    "fi": ("Välitetty viesti alkaa:", "Lähettäjä:", "Aihe:", "Päivämäärä:", "Vastaanottaja:", "Kopio:"),
    "fr": ("Début du message réexpédié :", "De:", "Objet:", "Date:", "À:", "Cc:"),
    "hr": ("Započni proslijeđenu poruku:", "Šalje:", "Predmet:", "Datum:", "Prima:", "Cc:"),
    "hu": ("Továbbított levél kezdete:", "Feladó:", "Tárgy:", "Dátum:", "Címzett:", "Másolat:"),
    "it": ("Inizio messaggio inoltrato:", "Da:", "Oggetto:", "Data:", "A:", "Cc:"),
    "nl": ("Begin doorgestuurd bericht:", "Van:", "Onderwerp:", "Datum:", "Aan:", "Kopie:"),
    "no": ("Videresendt melding:", "Fra:", "Emne:", "Dato:", "Til:", "Kopi:"),
    "pl": ("Początek przekazywanej wiadomości:", "Od:", "Temat:", "Data:", "Do:", "Dw:"),
    "pt": ("Início da mensagem reencaminhada:", "De:", "Assunto:", "Data:", "Para:", "Cc:"),
    "pt_br": ("Início da mensagem encaminhada:", "De:", "Assunto:", "Data:", "Para:", "Cc:"),
    "ro": ("Începe mesajul redirecționat:", "Expeditorul:", "Subiectul:", "Dată:", "Destinatarul:", "Cc:"),
    "ru": ("Начало переадресованного сообщения:", "Отправитель:", "Тема:", "Дата:", "Кому:", "Копия:"),
    "sk": ("Začiatok preposlanej správy:", "Od:", "Predmet:", "Dátum:", "Pre:", "Cc:"),
    "sv": ("Vidarebefordrat mejl:", "Från:", "Ämne:", "Datum:", "Till:", "Kopia:"),
    "tr": ("İleti başlangıcı:", "Kimden:", "Konu:", "Tarih:", "Kime:", "Bilgi:"),
    "uk": ("Початок листа, що пересилається:", "Від кого:", "Тема:", "Дата:", "Кому:", "Копія:"),
}

# Thunderbird: separator, Subject, Date, From, To, CC
THUNDERBIRD = {
    "cs": ("-------- Přeposlaná zpráva --------", "Předmět:", "Datum:", "Od:", "Komu:", "Kopie:"),
    "da": ("-------- Videresendt meddelelse --------", "Subject:", "Date:", "From:", "To:", "CC:"),
    "de": ("-------- Weitergeleitete Nachricht --------", "Betreff:", "Datum:", "Von:", "An:", "Kopie (CC):"),
    "en": ("-------- Forwarded Message --------", "Subject:", "Date:", "From:", "To:", "CC:"),
    "es": ("-------- Mensaje reenviado --------", "Asunto:", "Fecha:", "De:", "Para:", "CC:"),
    "fi": ("-------- Välitetty viesti / Fwd.Msg --------", "Aihe:", "Päiväys:", "Lähettäjä:", "Vastaanottaja:",
           "CC:"),
    "fr": ("-------- Message transféré --------", "Sujet :", "Date :", "De :", "Pour :", "Copie à :"),
    "hr": ("-------- Proslijeđena poruka --------", "Naslov:", "Datum:", "Šalje:", "Prima:", "CC:"),
    "hu": ("-------- Továbbított üzenet --------", "Tárgy:", "Dátum:", "Feladó:", "Címzett:", "CC:"),
    "it": ("-------- Messaggio Inoltrato --------", "Oggetto:", "Data:", "Mittente:", "A:", "CC:"),
    "nl": ("-------- Doorgestuurd bericht --------", "Onderwerp:", "Datum:", "Van:", "Aan:", "CC:"),
    "no": ("-------- Videresendt melding --------", "Emne:", "Dato:", "Fra:", "Til:", "CC:"),
    "pl": ("--- Treść przekazanej wiadomości ---", "Temat:", "Data:", "Nadawca:", "Adresat:", "Kopia:"),
    "pt": ("-------- Mensagem reencaminhada --------", "Assunto:", "Data:", "De:", "Para:", "CC:"),
    "pt_br": ("-------- Mensagem encaminhada --------", "Assunto:", "Data:", "De:", "Para:", "CC:"),
    "ro": ("-------- Mesaj redirecționat --------", "Subiect:", "Dată:", "de la:", "Către:", "CC:"),
    "ru": ("-------- Перенаправленное сообщение --------", "Тема:", "Дата:", "От:", "Кому:", "Копия:"),
    "sk": ("-------- Preposlaná správa --- Forwarded Message --------", "Predmet:", "Dátum:", "Od:", "Pre:",
           "Kópia:"),
    "sv": ("-------- Vidarebefordrat meddelande --------", "Ämne:", "Datum:", "Från:", "Till:", "Kopia:"),
    "tr": ("-------- İletilen İleti --------", "Konu:", "Tarih:", "Kimden:", "Kime:", "CC:"),
    "uk": ("-------- Переслане повідомлення --------", "Тема:", "Дата:", "Від:", "Кому:", "CC:"),
}

# Yahoo: separator, From, To, Cc, Sent, Subject
YAHOO = {
    "cs": ("----- Přeposlaná zpráva -----", "Od:", "Komu:", "Kopie:", "Datum:", "Předmět:"),
    "de": ("----- Weitergeleitete Nachricht -----", "Von:", "An:", "CC:", "Gesendet:", "Betreff:"),
    "en": ("----- Forwarded Message -----", "From:", "To:", "Cc:", "Sent:", "Subject:"),
    "es": ("----- Mensaje reenviado -----", "De:", "Para:", "CC:", "Enviado:", "Asunto:"),
    "fi": ("----- Edelleenlähetetty viesti -----", "Lähettäjä:", "Vastaanottaja:", "Kopio:", "Lähetetty:", "Aihe:"),
    "fr": ("----- Message transmis -----", "De :", "À :", "Cc :", "Envoyé :", "Objet :"),
    "hu": ("----- Továbbított üzenet -----", "Feladó:", "Címzett:", "Másolat:", "Elküldve:", "Tárgy:"),
    "it": ("----- Messaggio inoltrato -----", "Da:", "A:", "Cc:", "Inviato:", "Oggetto:"),
    "pl": ("----- Przekazana wiadomość -----", "Od:", "Do:", "Dw", "Wysłano:", "Temat:"),
    "pt": ("----- Mensagem reencaminhada -----", "De:", "Para:", "Cc:", "Enviado:", "Assunto"),
    "ro": ("----- Mesaj redirecționat -----", "De la:", "Către:", "Cc:", "Trimis:", "Subiect:"),
    "ru": ("----- Пересылаемое сообщение -----", "От:", "Кому:", "Копия:", "Отправлено:", "Тема:"),
    "sv": ("----- Vidarebefordrat meddelande -----", "Från:", "Till:", "Kopia:", "Skickat:", "Ämne:"),
    "tr": ("----- İletilmiş Mesaj -----", "Kimden:", "Kime:", "Cc:", "Gönderilen:", "Konu:"),
    "uk": ("----- Перенаправлене повідомлення -----", "Від:", "Кому:", "Копія:", "Відправлено:", "Тема:"),
}

# HubSpot: separator, From, Date, Subject, To, Cc
HUBSPOT = {
    "de": ("---------- Weitergeleitete Nachricht ---------", "Von:", "Datum:", "Betreff:", "An:", "Cc:"),
    "en": ("---------- Forwarded message ---------", "From:", "Date:", "Subject:", "To:", "Cc:"),
    "es": ("---------- Mensaje reenviado ---------", "De:", "Fecha:", "Asunto:", "A:", "Cc:"),
    "fi": ("---------- Edelleenlähetetty viesti ---------", "Lähettäjä:", "Päivämäärä:", "Aihe:", "Vastaanottaja:",
           "Kopio:"),
    "fr": ("---------- Message transféré ---------", "De :", "Date :", "Objet :", "À :", "Cc :"),
    "it": ("---------- Messaggio inoltrato ---------", "Da:", "Data:", "Oggetto:", "A:", "Cc:"),
    "ja": ("---------- メッセージを転送 ---------", "送信元：", "日付：", "件名：", "送信先：", "CC："),
    "nl": ("---------- Doorgestuurd bericht ---------", "Van:", "Datum:", "Onderwerp:", "Aan:", "Cc:"),
    "pl": ("---------- Wiadomość przesłana dalej ---------", "Od:", "Data:", "Temat:", "Do:", "DW:"),
    "pt_br": ("---------- Mensagem encaminhada ---------", "De:", "Data:", "Assunto:", "Para:", "Cc:"),
    "sv": ("---------- Vidarebefordrat meddelande ---------", "Från:", "Datum:", "Ämne:", "Till:", "Kopia:"),
}

# "New Outlook 2019": subject prefix, From, Date, To, Cc, Subject
NEW_OUTLOOK = {
    "cs": ("FW:", "Od:", "Datum:", "Komu:", "Kopie:", "Předmět:"),
    "da": ("VS:", "Fra:", "Dato:", "Til:", "Cc:", "Emne:"),
    "de": ("WG:", "Von:", "Datum:", "An:", "Cc:", "Betreff:"),
    "en": ("FW:", "From:", "Date:", "To:", "Cc:", "Subject:"),
    "es": ("RV:", "De:", "Fecha:", "Para:", "CC:", "Asunto:"),
    "fi": ("VL:", "Lähettäjä:", "Päivämäärä:", "Vastaanottaja:", "Kopio:", "Aihe:"),
    "fr": ("TR:", "De :", "Date :", "À :", "Cc :", "Objet :"),
    "hu": ("FW:", "Feladó:", "Dátum:", "Címzett:", "Másolatot kap:", "Tárgy:"),
    "it": ("I:", "Da:", "Data:", "A:", "Cc:", "Oggetto:"),
    "nl": ("FW:", "Van:", "Datum:", "Aan:", "CC:", "Onderwerp:"),
    "no": ("Videresend:", "Fra:", "Dato:", "Til:", "Kopi:", "Emne:"),
    "pl": ("PD:", "Od:", "Data:", "Do:", "DW:", "Temat:"),
    "pt": ("FW:", "De:", "Data:", "Para:", "CC:", "Assunto:"),
    "pt_br": ("ENC:", "De:", "Data:", "Para:", "Cc:", "Assunto:"),
    "ru": ("FW:", "От:", "Дата:", "Кому:", "Копия:", "Тема:"),
    "sk": ("FW:", "Od:", "Dátum:", "Komu:", "Kópia:", "Predmet:"),
    "sv": ("VB:", "Från:", "Datum:", "Till:", "Kopia:", "Ämne:"),
    "tr": ("İLT:", "Kimden:", "Tarih:", "Kime:", "Bilgi:", "Konu:"),
}

# "Outlook 2019" attribution lines ({n} = name, {a} = address)
OUTLOOK_ATTR = {
    "cs": "Dne 28/10/2021 12:46, {n} <{a}> napsal(a):",
    "da": 'D. 28/10/2021 12.46 skrev "{n}" <{a}>:',
    "de": 'Am 28/10/2021, 12:46 schrieb "{n}" <{a}>:',
    "en": 'On 28/10/2021 12:46, "{n}" <{a}> wrote:',
    "es": 'El 28/10/2021 12:46, "{n}" <{a}> escribió:',
    "fi": "{n} <{a}> kirjoitti 28/10/2021 12.46:",
    "fr": "Le 28/10/2021 12:46, « {n} » <{a}> a écrit :",
    "hu": "28/10/2021 12:46 időpontban {n} ({a}) ezt írta:",
    "it": 'Il giorno 28/10/2021, 12:46 "{n}" <{a}> ha scritto:',
    "nl": "Op 28/10/2021 12:46 heeft {n} <{a}> geschreven:",
    "no": "{n} <{a}> skrev følgende den 28/10/2021, 12:46:",
    "pl": "Dnia 28/10/2021, 12:46 użytkownik „{n}” <{a}> napisał:",
    "pt": 'Em 28/10/21, 12:46, "{n}" <{a}> escreveu:',
    "ru": '28/10/2021, 12:46 пользователь "{n}" <{a}> написал:',
    "sk": "28/10/2021 12:46 používateľ {n} (<{a}>) napísal:",
    "sv": 'Den 28/10/2021 12:46 skrev "{n}" <{a}> följande:',
    "tr": '"{n}" <{a}>, 28/10/2021 12:46 tarihinde şunu yazdı:',
}

OUTLOOK_LIVE_PREFIX = {"cs": "Fw:", "da": "VS:", "de": "WG:", "en": "Fw:", "es": "RV:", "fr": "TR:", "hr": "Fw:",
                       "hu": "Fw:", "it": "I:", "nl": "FW:", "no": "Vs:", "pl": "PD:", "pt_br": "ENC:", "pt": "FW:",
                       "ro": "Redir.:", "sk": "Fw:", "sv": "VB:"}

# Outlook desktop "-----Original Message-----" banners: banner, From, Sent, To, Cc, Subject, fwd prefix, reply prefix
OUTLOOK_BANNER = {
    "en": ("-----Original Message-----", "From:", "Sent:", "To:", "Cc:", "Subject:", "FW:", "RE:"),
    "de": ("-----Ursprüngliche Nachricht-----", "Von:", "Gesendet:", "An:", "Cc:", "Betreff:", "WG:", "AW:"),
    "fr": ("-----Message d'origine-----", "De :", "Envoyé :", "À :", "Cc :", "Objet :", "TR :", "RE :"),
    "es": ("-----Mensaje original-----", "De:", "Enviado el:", "Para:", "CC:", "Asunto:", "RV:", "RE:"),
    "it": ("-----Messaggio originale-----", "Da:", "Inviato:", "A:", "Cc:", "Oggetto:", "I:", "R:"),
    "nl": ("-----Oorspronkelijk bericht-----", "Van:", "Verzonden:", "Aan:", "CC:", "Onderwerp:", "FW:", "Antw:"),
    "pt_br": ("-----Mensagem original-----", "De:", "Enviada em:", "Para:", "Cc:", "Assunto:", "ENC:", "RES:"),
    "sv": ("-----Ursprungligt meddelande-----", "Från:", "Skickat:", "Till:", "Kopia:", "Ämne:", "VB:", "SV:"),
    "da": ("-----Oprindelig meddelelse-----", "Fra:", "Sendt:", "Til:", "Cc:", "Emne:", "VS:", "SV:"),
    "cs": ("-----Původní zpráva-----", "Od:", "Odesláno:", "Komu:", "Kopie:", "Předmět:", "FW:", "Odp:"),
    "no": ("-----Opprinnelig melding-----", "Fra:", "Sendt:", "Til:", "Kopi:", "Emne:", "VS:", "SV:"),
    "fi": ("-----Alkuperäinen viesti-----", "Lähettäjä:", "Lähetetty:", "Vastaanottaja:", "Kopio:", "Aihe:", "VL:",
           "VS:"),
    "pl": ("-----Oryginalna wiadomość-----", "Od:", "Wysłano:", "Do:", "DW:", "Temat:", "PD:", "Odp:"),
    "ru": ("-----Исходное сообщение-----", "От:", "Отправлено:", "Кому:", "Копия:", "Тема:", "FW:", "RE:"),
    "tr": ("-----Orijinal ileti-----", "Kimden:", "Gönderildi:", "Kime:", "Bilgi:", "Konu:", "İLT:", "YNT:"),
    "zh": ("-----邮件原件-----", "发件人:", "发送时间:", "收件人:", "抄送:", "主题:", "转发:", "答复:"),
    "zh_tw": ("-----原始郵件-----", "寄件者:", "寄件日期:", "收件者:", "副本:", "主旨:", "轉寄:", "回覆:"),
    "ja": ("-----元のメッセージ-----", "差出人:", "送信日時:", "宛先:", "CC:", "件名:", "FW:", "RE:"),
    "ko": ("-----원본 메시지-----", "보낸 사람:", "보낸 날짜:", "받는 사람:", "참조:", "제목:", "FW:", "RE:"),
}
SENT_DATE = {"en": "Tuesday, January 11, 2022 3:34 PM", "de": "Dienstag, 11. Januar 2022 15:34",
             "fr": "mardi 11 janvier 2022 15:34", "es": "martes, 11 de enero de 2022 15:34",
             "it": "martedì 11 gennaio 2022 15:34", "nl": "dinsdag 11 januari 2022 15:34",
             "pt_br": "terça-feira, 11 de janeiro de 2022 15:34", "sv": "den 11 januari 2022 15:34",
             "da": "11. januar 2022 15:34", "cs": "úterý 11. ledna 2022 15:34", "no": "tirsdag 11. januar 2022 15:34",
             "fi": "11. tammikuuta 2022 15.34", "pl": "wtorek, 11 stycznia 2022 15:34",
             "ru": "11 января 2022 г. 15:34", "tr": "11 Ocak 2022 Salı 15:34", "zh": "2022年1月11日 15:34",
             "zh_tw": "2022年1月11日 下午 03:34", "ja": "2022年1月11日 15:34", "ko": "2022년 1월 11일 화요일 오후 3:34"}


def body_lines(locale: str) -> str:
    sentence = PEOPLE[locale][2]
    return f"{sentence}\n\n{PEOPLE[locale][0]}\n"


# --------------------------------------------------------------------------------------------
# Block renderers
# --------------------------------------------------------------------------------------------

def gmail_block(loc: str, from_value: str, subj: str, body: str, sep: str = "---------- Forwarded message ---------",
                cc: bool = True) -> str:
    lines = [sep, f"{GMAIL_FROM[loc]} {from_value}", f"Date: {GMAIL_DATE[loc]}", f"Subject: {subj}",
             f"To: <{TO_PERSON[1]}>"]
    if cc:
        lines.append(f"Cc: {CC_PEOPLE}")
    return "\n".join(lines) + "\n\n" + body


def apple_block(loc: str, from_value: str, subj: str, body: str) -> str:
    sep, f, s, d, t, c = APPLE[loc]
    return (f"{sep}\n\n{f} {from_value}\n{s} {subj}\n{d} 26. 10. 2021 14:25:08 GMT+3\n{t} {TO_PERSON[1]}\n"
            f"{c} {CC_PEOPLE}\n\n{body}")


def thunderbird_block(loc: str, from_value: str, subj: str, body: str) -> str:
    sep, s, d, f, t, c = THUNDERBIRD[loc]
    return (f"{sep}\n{s} {TAB}{subj}\n{d} {TAB}Wed, 3 Nov 2021 15:51:30 +0100\n{f} {TAB}{from_value}\n"
            f"{t} {TAB}{TO_PERSON[1]}\n{c} {TAB}{CC_PEOPLE}\n\n\n\n{body}")


def yahoo_block(loc: str, from_value: str, subj: str, body: str) -> str:
    sep, f, t, c, s, sub = YAHOO[loc]
    return (f"   {sep} {f} {from_value}{t} \"{TO_PERSON[1]}\" <{TO_PERSON[1]}>{c} {CC_SEMI}"
            f"{s} Tuesday, November 2, 2021, 09:26:50 AM GMT+1{sub} {subj}\n {body}")


def hubspot_block(loc: str, from_value: str, subj: str, body: str, colon_space: str = " ") -> str:
    sep, f, d, s, t, c = HUBSPOT[loc]
    return (f"{sep}\n{f}{colon_space}{from_value}\n{d}{colon_space}Monday, September 19, 2022, 5:55:44 PM -0400\n"
            f"{s}{colon_space}{subj}\n{t}{colon_space}{TO_PERSON[1]}\n{c}{colon_space}{CC_PEOPLE}\n\n{body}")


def new_outlook_block(loc: str, from_value: str, subj: str, body: str) -> str:
    _, f, d, t, c, s = NEW_OUTLOOK[loc]
    return (f"{f} {from_value}\n{d} Thursday, 28 October 2021 at 12:46\n{t} {TO_PERSON[1]} <{TO_PERSON[1]}>\n"
            f"{c} {CC_PEOPLE}\n{s} {subj}\n{body}")


def outlook_block(loc: str, from_value: str, subj: str, body: str, banner: bool = True, cc: bool = False) -> str:
    b, f, s, t, c, sub, _, _ = OUTLOOK_BANNER[loc]
    lines = ([b] if banner else []) + [f"{f} {from_value}", f"{s} {SENT_DATE[loc]}",
                                       f"{t} {TO_PERSON[0]} <{TO_PERSON[1]}>"]
    if cc:
        lines.append(f"{c} {CC_SEMI}")
    lines.append(f"{sub} {subj}")
    return "\n".join(lines) + "\n\n" + body


def owa_block(from_value: str, subj: str, body: str, labels=("From:", "Sent:", "To:", "Cc:", "Subject:"),
              date: str = "Wednesday, October 27, 2021 15:14") -> str:
    f, s, t, c, sub = labels
    return (f"{'_' * 32}\n{f} {from_value}\n{s} {date}\n{t} {TO_PERSON[1]} <{TO_PERSON[1]}>\n{c} {CC_SEMI}\n"
            f"{sub} {subj}\n\n{body}")


def build() -> None:  # noqa: C901, PLR0915 - one flat list of cases is the point
    fw = "Hi team, see below.\n\n"

    # ---------------- Gmail, per locale (From label localised, rest English)
    for loc in ["en", "de", "fr", "es", "cs", "fi", "pl", "ru", "tr", "hu", "ro", "uk", "et", "pt_br", "hr", "sv"]:
        n, a, _ = person(loc)
        plain(f"gmail_{loc}", f"Fwd: {ORIG_SUBJECT[loc]}",
              fw + gmail_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc)),
              forward=True, email=a, name=n, category="gmail")
    # Gmail: <addr> only, old 10/10 separator, =46rom QP, no subject prefix
    plain("gmail_en_angle_only", "Fwd: Delivery", gmail_block(
        "en", "<noreply@shop-orders.example>", "Delivery", "Your parcel is on its way.\n"),
        forward=True, email="noreply@shop-orders.example", category="gmail")
    text = gmail_block("en", "Brandon Casey <drafnel@gmail-like.example>", "permission to re-license strbuf",
                       "Body text here.\n", sep="---------- Forwarded message ----------")
    raw_qp = quopri.encodestring(text.encode()).replace(b"\nFrom: ", b"\n=46rom: ")
    add("gmail_old_separator_qp_46rom", message("Fwd: permission to re-license strbuf",
        b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n' + raw_qp,
        n=len(CASES)), forward=True, email="drafnel@gmail-like.example", name="Brandon Casey", category="gmail")
    plain("gmail_no_subject_prefix", "the numbers you wanted", gmail_block(
        "de", "Petra Schulz <petra.schulz@zahlen-werk.example>", "Zahlen", "Hier die Zahlen.\n"),
        forward=True, email="petra.schulz@zahlen-werk.example", name="Petra Schulz", category="gmail",
        note="strong separator; subject edited by the user")
    plain("gmail_fwd_uppercase_ticket_tag", "[Ticket#88123] FWD: Invoice 2291", gmail_block(
        "en", '"Accounts, Payable" <payables@vendor-corp.example>', "Invoice 2291", "See attached invoice.\n"),
        forward=True, email="payables@vendor-corp.example", name="Accounts, Payable", category="subject+gmail")

    # ---------------- Apple Mail: fully quoted (macOS) and unquoted separator variants
    for loc in ["en", "de", "fr", "es", "it", "nl", "sv", "ru", "uk", "tr", "ro", "pl", "fi", "hu", "cs", "da",
                "no", "pt", "pt_br", "sk", "hr"]:
        n, a, _ = person(loc)
        block = apple_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc))
        plain(f"apple_{loc}", f"Fwd: {ORIG_SUBJECT[loc]}", "\n\n" + quote(block) + "\n\n\nSent from my iPhone\n"
              if loc in ("en", "sv") else "\n" + quote(block) + "\n",
              forward=True, email=a, name=n, category="apple")
    plain("apple_ios_fr_unquoted_separator", "Fwd: Réservation",
          "Envoyé de mon iPhone\n\nDébut du message transféré :\n\n" + quote(
              f"De: Hôtel Belle Vue <reservations@hotel-bellevue.example>\nDate: 17 août 2022 à 09:06:24 UTC+2\n"
              f"À: {TO_PERSON[1]}\nObjet: Réservation confirmée\n\nMerci pour votre réservation.\n"),
          forward=True, email="reservations@hotel-bellevue.example", name="Hôtel Belle Vue", category="apple")
    plain("apple_en_bare_address_reply_to", "Fwd: Payment receipt", quote(
        "Begin forwarded message:\n\nFrom: billing@payments-hub.example\nSubject: Payment receipt\n"
        "Date: 16 July 2021 at 19:24:14 CEST\nTo: 'Bessie, Berry' <bessie.berry@helpdesk-team.example>\n"
        "Reply-To: Billing Team <help@payments-hub.example>\n\nThanks for your payment.\n"),
        forward=True, email="billing@payments-hub.example", category="from-shape")
    plain("apple_en_single_quoted_names", "Fwd: Lunch", quote(
        "Begin forwarded message:\n\nFrom: \"'Nora Quinn'\" <nora.quinn@cater-co.example>\nSubject: Lunch\n"
        "Date: 16 July 2021 at 19:24:14 CEST\nTo: 'walter.sheltan@partner-org.example' "
        "<walter.sheltan@partner-org.example>\n\nMenu attached.\n"),
        forward=True, email="nora.quinn@cater-co.example", name="Nora Quinn", category="from-shape")
    plain("apple_de_iphone_bold_labels", "Fwd: Buchungsbestätigung (Auftrag 9DDD99)",
          "\n\nVon meinem iPhone gesendet\n\nAnfang der weitergeleiteten Nachricht:\n\n"
          "*Von:* Buchung <noreply@reise-buchung.example>\n*Datum:* 17. Mai 2023 um 22:36:20 MESZ\n"
          f"*An:* {TO_PERSON[1]}\n*Betreff:* *Buchungsbestätigung (Auftrag 9DDD99)*\n"
          "*Antwort an:* noreply@reise-buchung.example\n\nIhre Buchung ist bestätigt.\n",
          forward=True, email="noreply@reise-buchung.example", name="Buchung", category="artefact-bold")

    # ---------------- Thunderbird (TAB after label)
    for loc in ["en", "de", "fr", "pl", "ru", "sk", "fi", "it", "tr", "ro", "hu", "es", "nl", "cs", "uk", "pt_br"]:
        n, a, _ = person(loc)
        charset = {"ru": "koi8-r", "fr": "iso-8859-1", "hu": "iso-8859-2", "cs": "iso-8859-2"}.get(loc, "utf-8")
        cte = {"de": "quoted-printable", "pl": "base64"}.get(loc)
        plain(f"thunderbird_{loc}", f"Fwd: {ORIG_SUBJECT[loc]}",
              fw + thunderbird_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc)),
              charset=charset, cte=cte, forward=True, email=a, name=n, category="thunderbird")
    plain("thunderbird_old_original_message", "Fwd: Re: XC5000 improvements: call for testers!",
          "-------- Original Message --------\nSubject: Re: XC5000 improvements: call for testers!\n"
          "Date: Wed, 06 May 2009 19:09:23 -0500\nFrom: John R. <johnr@wowway-like.example>\n"
          "To: Linux Media Mailing List <linux-media@vger-like.example>\n"
          "References: <412bdbff0905052114r7f481759r373fd0b814f458e@mail.example>\n\nWorks for me.\n",
          forward=True, email="johnr@wowway-like.example", name="John R.", category="thunderbird")

    # ---------------- Yahoo (run-together text as produced from its HTML)
    for loc in ["en", "de", "fr", "es", "ru", "pl", "pt", "tr", "fi", "sv", "it", "uk", "cs", "ro", "hu"]:
        n, a, _ = person(loc)
        charset = {"pl": "iso-8859-2", "ru": "windows-1251", "de": "windows-1252"}.get(loc, "utf-8")
        plain(f"yahoo_{loc}", f"Fw: {ORIG_SUBJECT[loc]}",
              yahoo_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc)),
              charset=charset, forward=True, email=a, name=n, category="yahoo")

    # ---------------- HubSpot
    for loc in ["en", "de", "es", "fi", "fr", "it", "ja", "nl", "pl", "pt_br", "sv"]:
        n, a, _ = person(loc)
        colon = NBSP if loc == "fr" else (" " if loc != "ja" else "")
        block = hubspot_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc), colon_space=colon)
        if loc == "fr":
            block = block.replace(" :", NBSP + ":")
        plain(f"hubspot_{loc}", f"Fwd: {ORIG_SUBJECT[loc]}", block, forward=True, email=a, name=n,
              category="hubspot")

    # ---------------- "New Outlook 2019": no separator, subject prefix, body glued on
    for loc in ["en", "de", "fr", "es", "it", "pt_br", "sv", "da", "no", "fi", "pl", "tr", "hu", "ru", "cs", "nl",
                "sk", "pt"]:
        n, a, _ = person(loc)
        prefix = NEW_OUTLOOK[loc][0]
        plain(f"new_outlook_{loc}", f"{prefix} {ORIG_SUBJECT[loc]}",
              new_outlook_block(loc, f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc)),
              forward=True, email=a, name=n, category="new_outlook")
    plain("new_outlook_en_quoted_addr_name", "FW: Integer consequat",
          new_outlook_block("en", '"ops@vendor-ops.example" <ops@vendor-ops.example>', "Integer consequat",
                            "Status report.\n"), forward=True, email="ops@vendor-ops.example", category="from-shape")

    # ---------------- "Outlook 2019" attribution (BOM, CRLF, 4-space indented body)
    for loc, attr in OUTLOOK_ATTR.items():
        n, a, sentence = person(loc if loc != "cs" else "cs")
        line = attr.format(n=n, a=a)
        plain(f"outlook_mac_attr_{loc}", f"FW: {ORIG_SUBJECT[loc]}", f"{BOM}{line}\n\n    {sentence}\n\n    {n}\n",
              crlf=True, forward=True, email=a, name=n, category="outlook_attribution")

    # ---------------- Outlook Live / 365 (English block, localised subject prefix)
    for loc, prefix in OUTLOOK_LIVE_PREFIX.items():
        n, a, _ = person(loc)
        plain(f"outlook_live_{loc}", f"{prefix} {ORIG_SUBJECT[loc]}",
              fw + owa_block(f"{n} <{a}>", ORIG_SUBJECT[loc], body_lines(loc)),
              forward=True, email=a, name=n, category="outlook_live")
    plain("outlook_live_last_first_comma", "FW: Contract", owa_block(
        "Doe, John <john.doe@acme-corp.example>", "Contract", "Signed copy attached.\n"),
        forward=True, email="john.doe@acme-corp.example", name="Doe, John", category="from-shape")
    plain("outlook_live_addr_addr", "Fw: Ping", owa_block(
        "alerts@monitor-svc.example <alerts@monitor-svc.example>", "Ping", "Host down.\n"),
        forward=True, email="alerts@monitor-svc.example", category="from-shape")
    plain("outlook_live_mobile_footer", "Fw: Receipt", "Get Outlook for iOS<https://aka.ms/o0ukef>\n" + owa_block(
        "Store <orders@store-front.example>", "Receipt", "Order 1234.\n"),
        forward=True, email="orders@store-front.example", name="Store", category="outlook_live")
    plain("outlook_live_ko_localised_euckr", "FW: 견적서", owa_block(
        "김민준 <minjun.kim@yeshi-hoesa.co.kr>", "견적서", "안녕하세요, 견적서를 보내드립니다.\n",
        labels=("보낸 사람:", "보낸 날짜:", "받는 사람:", "참조:", "제목:"), date="2017년 8월 7일 월요일 오후 4:42:05"),
        charset="euc-kr", forward=True, email="minjun.kim@yeshi-hoesa.co.kr", name="김민준", category="cjk")
    plain("outlook_live_zh_tw_big5", "轉寄: 報價單", owa_block(
        "陳大文 <dawen.chen@fanli-gongsi.com.tw>", "報價單", "您好，附件是報價單，請查收。\n",
        labels=("寄件者:", "寄件日期:", "收件者:", "副本:", "主旨:"), date="2024年3月22日 上午 08:29"),
        charset="big5", forward=True, email="dawen.chen@fanli-gongsi.com.tw", name="陳大文", category="cjk")

    # ---------------- Outlook desktop: banners per locale, separator-less blocks
    for loc in ["en", "de", "fr", "es", "it", "nl", "pt_br", "sv", "da", "cs", "no", "fi", "pl", "ru", "tr", "zh",
                "ja", "ko", "zh_tw"]:
        n, a, _ = person(loc)
        fwd_prefix = OUTLOOK_BANNER[loc][6]
        charset = {"de": "windows-1252", "fr": "iso-8859-1", "cs": "windows-1250", "ru": "windows-1251",
                   "zh": "gb2312", "ja": "iso-2022-jp", "ko": "euc-kr", "zh_tw": "big5", "pl": "iso-8859-2"
                   }.get(loc, "utf-8")
        cte = {"es": "quoted-printable", "zh": "base64", "nl": "base64"}.get(loc)
        frm = f"{n} [mailto:{a}]" if loc in ("en", "de", "nl", "sv") else f"{n} <{a}>"
        plain(f"outlook_banner_{loc}", f"{fwd_prefix} {ORIG_SUBJECT[loc]}",
              fw + outlook_block(loc, frm, ORIG_SUBJECT[loc], body_lines(loc), cc=loc in ("en", "fr")),
              charset=charset, cte=cte, forward=True, email=a, name=n, category="outlook_banner")
    # French with NBSP before the colon (QP encoded as =A0 in latin-1)
    plain("outlook_banner_fr_nbsp_colons", "TR : Facture",
          outlook_block("fr", "Amélie Dubois <amelie.dubois@exemple-societe.fr>", "Facture", "Voir pièce jointe.\n")
          .replace(" :", NBSP + ":"), charset="iso-8859-1", cte="quoted-printable",
          forward=True, email="amelie.dubois@exemple-societe.fr", name="Amélie Dubois", category="artefact-nbsp")
    # Outlook desktop (no banner) base64, crisp issue #3 layout
    plain("outlook_desktop_nobanner_base64", "FW: Pressing matter",
          "From: Joe Montana <joemontana@email-host.example>\nSent: Tuesday, January 11, 2022 3:34 PM\n"
          "To: Mary Montana <marymontana@email-host.example>\nSubject: Pressing matter\n\nHi\n\nBye\n",
          cte="base64", forward=True, email="joemontana@email-host.example", name="Joe Montana",
          category="outlook_desktop")
    plain("outlook_desktop_mailto_wrapped", "FW: Hello",
          "FYI\n\n  *From:* Bob Example [mailto:\n  bob@example-bob.example]\n  *Sent:* Wednesday, June 27, 2012 3:05 PM\n"
          "  *To:* travis@example-travis.example\n  *Subject:* Hello\n\n  Hi Travis\n",
          forward=True, email="bob@example-bob.example", name="Bob Example", category="from-shape")
    plain("outlook_desktop_name_wrapped_addr", "FW: Your benefits",
          "From: Human Resources \n<a-really-long-automated-email+1234556@humanresources-dept.example> \n"
          "Sent: Monday, March 3, 2025 9:00 AM\nTo: Staff\nSubject: Your benefits\n\nPlease review.\n",
          forward=True, email="a-really-long-automated-email+1234556@humanresources-dept.example",
          name="Human Resources", category="artefact-wrap")
    plain("outlook_desktop_name_only", "FW: Integer consequat non purus",
          "-----Original Message-----\nFrom: John Doe\nSent: 23 July 2022 07:53\nTo: Bessie Berry\n"
          "Subject: Integer consequat non purus\n\nLorem ipsum.\n",
          forward=True, email=None, name="John Doe", category="from-shape-name-only")
    plain("outlook_desktop_x500", "FW: Staffing",
          "From: Akroyd, Cathy R [/O=EXCHANGELABS/OU=EXCHANGE ADMINISTRATIVE GROUP\n"
          "      (FYDIBOHF23SPDLT)/CN=RECIPIENTS/CN=82FDF2DE4BE5481C8F01C933B5F2CAB9-CRAKROYD]\n"
          "Sent: Monday, March 3, 2025 9:00 AM\n"
          "To:   Talley,NoelleS$[/o=ExchangeLabs/ou=ExchangeAdministrativeGroup\n"
          "      (FYDIBOHF23SPDLT)/cn=Recipients/cn=cd9f3882421746bcb5a60cbe82cdff89-nstalley]; Weiner, Sadie\n"
          "Subject: Staffing\n\nSee the roster.\n",
          forward=True, email=None, name="Akroyd, Cathy R", category="from-shape-x500")
    plain("outlook_ja_name_only_blank_lines", "FW: 【内部連絡】見積もり依頼",
          "差出人: Toshitaka Mochizuki\n\n送信日時: 2025年10月10日 10:57\n\n宛先: Itsuo Sakai\n\n"
          "件名: 【内部連絡】FW: [RFQ] 見積もり依頼\n\nお世話になっております。\n", charset="iso-2022-jp",
          forward=True, email=None, name="Toshitaka Mochizuki", category="from-shape-name-only")
    plain("outlook_mailto_angle_html2text", "FW: Planning",
          "________________________________\nFrom: Valéry Martin <va@acme-plan.example<mailto:va@acme-plan.example>>\n"
          "Sent: Tuesday, 21 February 2023 at 16:49\nTo: Office <office@acme-plan.example<mailto:office@acme-plan.example>>\n"
          "Subject: Planning\n\nVoir ci-dessous.\n",
          forward=True, email="va@acme-plan.example", name="Valéry Martin", category="from-shape")
    plain("outlook_rfc2047_in_text", "FW: Bestellung",
          "From: =?utf-8?q?J=C3=B6rg_Bauer?= <joerg.bauer@bestell-haus.example>\nSent: Monday, 3 March 2025 09:00\n"
          "To: Sam Agent\nSubject: Bestellung\n\nBitte bearbeiten.\n",
          forward=True, email="joerg.bauer@bestell-haus.example", name="Jörg Bauer", category="from-shape")
    plain("outlook_name_paren_addr", "FW: Sync",
          "-----Original Message-----\nFrom: Kim Lee (kim.lee@sync-co.example)\nSent: 3 March 2025 09:00\n"
          "To: Sam Agent\nSubject: Sync\n\nLet's sync.\n",
          forward=True, email="kim.lee@sync-co.example", name="Kim Lee", category="from-shape")
    plain("outlook_html_escaped_addr", "FW: Escaped",
          "-----Original Message-----\nFrom: Ana Costa &lt;ana.costa@escaped-mail.example&gt;\n"
          "Sent: 3 March 2025 09:00\nTo: Sam Agent\nSubject: Escaped\n\nOlá.\n",
          forward=True, email="ana.costa@escaped-mail.example", name="Ana Costa", category="from-shape")

    # ---------------- "On behalf of" in several languages (reference 2.2 / 4 #14)
    plain("behalf_de_list_name_only", "WG: PCTV 520e on Linux",
          "Von: linux-media-owner@vger-like.example [mailto:linux-media-owner@vger-like.example] Im Auftrag von "
          "Devin Heitmueller\nGesendet: Freitag, 14. Oktober 2011 15:28\nAn: Mauro Carvalho Chehab\n"
          "Cc: Benjamin Larsson; linux-media@vger-like.example\nBetreff: Re: PCTV 520e on Linux\n\nHallo.\n",
          forward=True, email=None, name="Devin Heitmueller", category="behalf",
          note="list SENDER, PRINCIPAL printed without an address: the author is the principal, address unknown")
    plain("behalf_en_list_principal_addr", "FW: [PATCH] drm/amdgpu: fix",
          "________________________________\nFrom: amd-gfx <amd-gfx-bounces@lists.freedesktop-like.example> on behalf "
          "of Alex Deucher <alexander.deucher@amd-like.example>\nSent: Monday, March 3, 2025 9:00 AM\n"
          "To: amd-gfx@lists.freedesktop-like.example\nSubject: [PATCH] drm/amdgpu: fix\n\nPatch below.\n",
          forward=True, email="alexander.deucher@amd-like.example", name="Alex Deucher", category="behalf")
    plain("behalf_en_owa_delegate", "FW: Integer consequat non purus",
          "Praesent suscipit.\n\n*From:* John Doe<mailto:john.doe@acme-desk.example> <john.doe@acme-desk.example"
          "<mailto:john.doe@acme-desk.example>> on behalf of ticketing@acme-desk.example<mailto:ticketing@acme-desk.example>\n"
          "*Sent:* Wednesday, October 27, 2021 15:14\n*To:* bessie.berry@acme-desk.example <bessie.berry@acme-desk.example>\n"
          "*Subject:* Integer consequat non purus\n\nLorem.\n",
          forward=True, email="john.doe@acme-desk.example", name="John Doe", category="behalf",
          note="human delegate writing for a shared mailbox: the human (SENDER) wrote it (reference 2.2)")
    plain("behalf_nl_namens", "FW: samba vraag",
          "Van: samba-technical [mailto:samba-technical-bounces@lists.samba-like.example] Namens Rowland Penny "
          "<rpenny@samba-like.example>\nVerzonden: dinsdag 11 januari 2022 15:34\nAan: Sam Agent\n"
          "Onderwerp: samba vraag\n\nZie hieronder.\n",
          forward=True, email="rpenny@samba-like.example", name="Rowland Penny", category="behalf")
    plain("behalf_es_en_nombre_de", "RV: jailhouse",
          "De: jailhouse-dev@googlegroups-like.example <jailhouse-dev@googlegroups-like.example> En nombre de "
          "Sainz Markel <markel.sainz@ikerlan-like.example>\nEnviado el: martes, 11 de enero de 2022 15:34\n"
          "Para: Sam Agent\nAsunto: jailhouse\n\nHola.\n",
          forward=True, email="markel.sainz@ikerlan-like.example", name="Sainz Markel", category="behalf")
    plain("behalf_es_wrapped_quoted", "RV: dvb",
          "Mira esto.\n\n> -----Mensaje original-----\n> De: linux-dvb-bounces@linuxtv-like.example "
          "[mailto:linux-dvb-bounces@linuxtv-like.example] En\n> nombre de Luca Tettamanti <kronos.it@mail-like.example>\n"
          "> Enviado el: martes, 11 de enero de 2022 15:34\n> Para: linux-dvb@linuxtv-like.example\n"
          "> Asunto: dvb\n>\n> Ciao.\n",
          forward=True, email="kronos.it@mail-like.example", name="Luca Tettamanti", category="behalf")
    plain("behalf_it_per_conto_di", "I: kernel",
          "-----Messaggio originale-----\nDa: linux-kernel-owner@vger-like.example\n"
          "[mailto:linux-kernel-owner@vger-like.example]Per conto di Innocenti\nMaresin\n"
          "Inviato: martedì 11 gennaio 2022 15:34\nA: Sam Agent\nOggetto: kernel\n\nCiao.\n",
          forward=True, email=None, name="Innocenti Maresin", category="behalf")
    plain("behalf_fr_de_la_part_de", "TR: users",
          "-----Message d'origine-----\nDe : users-bounces@open-mpi-like.example [mailto:users-bounces@open-mpi-like.example]\n"
          "De la\npart de Ralph H Castain\nEnvoyé : mardi 11 janvier 2022 15:34\nÀ : Sam Agent\nObjet : users\n\nSalut.\n",
          forward=True, email=None, name="Ralph H Castain", category="behalf")
    plain("behalf_sv_for", "VB: exim",
          "-----Ursprungligt meddelande-----\nFrån: Exim-users <exim-users-bounces+heiko=schlittermann.example@exim-like.example> "
          "För Heiko Schlittermann via Exim-users\nSkickat: den 11 januari 2022 15:34\nTill: Sam Agent\nÄmne: exim\n\nHej.\n",
          forward=True, email=None, category="behalf")
    plain("behalf_zh_tw_daibiao", "轉寄: openbmc",
          "________________________________\n寄件者: openbmc <openbmc-bounces+chris.chen3=flex-like.example@lists.ozlabs-like.example> 代表\n"
          "Chris Chen (TPI) <Chris.Chen3@flex-like.example>\n寄件日期: 2024年3月22日 上午 08:29\n"
          "收件者: openbmc@lists.ozlabs-like.example\n主旨: openbmc\n\n您好。\n", charset="big5",
          forward=True, email="chris.chen3@flex-like.example", name="Chris Chen (TPI)", category="behalf")

    # ---------------- Artefacts: quoting depth, TAB, full-width colons, CRLF, Unicode dashes
    n, a, _ = person("en")
    plain("artefact_quote_depth2", "Fwd: Quarterly figures", "See the thread.\n\n" + quote(
        gmail_block("en", f"{n} <{a}>", "Quarterly figures", "Numbers.\n"), depth=2),
        forward=True, email=a, name=n, category="artefact-quote")
    plain("artefact_quote_depth3_nospace", "Fwd: Quarterly figures", quote(
        thunderbird_block("en", f"{n} <{a}>", "Quarterly figures", "Numbers.\n"), depth=3, space=False),
        forward=True, email=a, name=n, category="artefact-quote")
    plain("artefact_fullwidth_colon_zh", "转发：报价单",
          "------------------ 原始邮件 ------------------\n发件人：\"王小明\" <xiaoming.wang@shili-gongsi.cn>;\n"
          "发送时间：2025年4月8日(星期二) 晚上8:43\n收件人：\"Sam\" <sam.agent@helpdesk-team.example>;\n"
          "主题：报价单\n\n您好，附件是报价单，请查收。\n", charset="gb2312", cte="base64",
          forward=True, email="xiaoming.wang@shili-gongsi.cn", name="王小明", category="cjk")
    plain("artefact_qq_flattened_nbsp", "转发：会议",
          f"------------------{NBSP}原始邮件{NBSP}------------------ 发件人: \"Kevin Zhao\" "
          "<kevin.zhao@qq-like.example>;  发送时间: 2025年4月8日(星期二) 晚上8:43 收件人: "
          "\"Sam\" <sam.agent@helpdesk-team.example>;  主题: 会议\n\n会议纪要。\n",
          forward=True, email="kevin.zhao@qq-like.example", name="Kevin Zhao", category="cjk")
    plain("artefact_coremail_quoted", "转发：补丁", "请看。\n\n" + quote(
        "-----原始邮件-----\n发件人: \"Leon Romanovsky\" <leon@kernel-like.example>\n"
        "发送时间: 2021-03-22 22:27:17 (星期一)\n收件人: \"Lv Yunlong\" <lyl2019@mail.ustc-like.example>\n"
        "抄送: sagi@grimberg-like.example\n主题: Re: [PATCH] infiniband: Fix a use after free\n\n补丁如下。\n"),
        charset="gb2312", forward=True, email="leon@kernel-like.example", name="Leon Romanovsky", category="cjk")
    plain("artefact_proton_unicode_dashes", "Fw: Keys",
          "‐‐‐‐‐‐‐ Original Message ‐‐‐‐‐‐‐\nOn Thursday, October 27th, 2022 at 12:31, Eve Adams "
          "<eve.adams@proton-like.example> wrote:\n\n> New keys attached.\n",
          forward=True, email="eve.adams@proton-like.example", name="Eve Adams", category="artefact-dash")
    plain("proton_forwarded_message", "Fw: Invitation",
          "------- Forwarded Message -------\nFrom: Oscar Wilde <oscar.wilde@proton-like.example>\n"
          "Date: On Thursday, October 27th, 2022 at 12:31\nSubject: Invitation\n"
          f"To: Sam Agent <{FORWARDER[1]}>\n\nCome to the party.\n",
          forward=True, email="oscar.wilde@proton-like.example", name="Oscar Wilde", category="other-client")
    plain("samsung_da_original_message", "Fwd: Abc has sent you a message!",
          "\n\nSendt fra min Galaxy\n\n-------- Oprindelig besked --------\nFra: A B C <abc@abc-org.example>\n"
          "Dato: 04.07.2024  17.45  (GMT+01:00)\nTil: abc@abc-dk.example\nEmne: Abc has sent you a message!\n\nHej.\n",
          forward=True, email="abc@abc-org.example", name="A B C", category="other-client")
    plain("samsung_fr_runtogether", "TR: Abc vous a envoyé un message",
          "-------- Message d'origine --------\nDe : Bea Durand <bea.durand@abc-be.example>\n"
          "Date : 23/06/24  10:46  (GMT+01:00)\nÀ : abc@abc-be2.example Objet : Abc vous a envoyé un message !\n\nBonjour.\n",
          forward=True, email="bea.durand@abc-be.example", name="Bea Durand", category="other-client")
    plain("samsung_corporate_sender_label", "Fwd: Re: [PATCH] f2fs: fix",
          "--------- Original Message ---------\nSender : Chao Yu <chao@kernel-like.example>\n"
          "Date : 2024-07-04 16:16 (GMT+9)\nTitle : Re: [PATCH] f2fs: fix null reference\n\nLooks fine.\n",
          forward=True, email="chao@kernel-like.example", name="Chao Yu", category="other-client")
    plain("mutt_forwarded_message_from", "Fwd: Re: v2.6 vs v3.0",
          "----- Forwarded message from \"Murray J. Root\" <murrayr@brain-like.example> -----\n\n"
          "From: \"Murray J. Root\" <murrayr@brain-like.example>\nTo: Jens Axboe <axboe@suse-like.example>\n"
          "Subject: Re: v2.6 vs v3.0\nDate: Sun, 29 Sep 2002 19:55:05 -0400\nUser-Agent: Mutt/1.4i\n\nText.\n\n"
          "----- End forwarded message -----\n",
          forward=True, email="murrayr@brain-like.example", name="Murray J. Root", category="other-client")
    plain("mutt_address_only_tab_date", "Fwd: [Bug 1234] crash",
          "----- Forwarded message from bugzilla-daemon@kernel-like.example -----\n\n"
          "Date:\tSun, 5 Dec 2004 10:00:00 +0000\nFrom: bugzilla-daemon@kernel-like.example\nTo: Sam\n"
          "Subject: [Bug 1234] crash\n\nDetails.\n\n----- End forwarded message -----\n",
          forward=True, email="bugzilla-daemon@kernel-like.example", category="other-client")
    plain("gnus_start_of_forwarded", "Fwd: mu4e question",
          "-------------------- Start of forwarded message --------------------\nFrom: Dirk Berg <dirk@mu-like.example>\n"
          "Subject: mu4e question\nDate: Mon, 03 Mar 2025 09:00:00 +0100\n\nHow do I?\n"
          "-------------------- End of forwarded message --------------------\n",
          forward=True, email="dirk@mu-like.example", name="Dirk Berg", category="other-client")
    plain("notes_forwarded_by_wrapped", "Fwd: RE: Receipt of Team Selection Form",
          "---------------------- Forwarded by Phillip K Allen/HOU/ECT on 09/05/2000\n01:50 PM "
          "---------------------------\n\n\n\"Christi Smith\" <christi.smith@lrinet-like.example> on 09/05/2000 "
          "11:40:59 AM\nPlease respond to <christi.smith@lrinet-like.example>\nTo: <Phillip.K.Allen@enron-like.example>\n"
          "cc: \"Debbie Nowak (E-mail)\" <dnowak@enron-like.example>\nSubject: RE: Receipt of Team Selection Form\n\nText.\n",
          forward=True, email="christi.smith@lrinet-like.example", name="Christi Smith", category="lotus_notes")
    plain("notes_forwarded_by_tab_indented", "Redraft of the Exclusivity Agreement",
          "----- Forwarded by Travis McCullough/HOU/ECT on 11/29/2000 07:34 PM -----\n\n"
          "\t\"Stockbridge, Edward T\" <tstockbridge@velaw-like.example>\n\t11/29/2000 03:56 PM\n\t\t \n"
          "\t\t To: \"McCullough, Travis (Enron)\" <travis.mccullough@enron-like.example>\n"
          "\t\t cc: \"Collins, Christopher\" <chriscollins@velaw-like.example>\n"
          "\t\t Subject: Redraft of the Exclusivity Agreement\n\nText.\n",
          forward=True, email="tstockbridge@velaw-like.example", name="Stockbridge, Edward T", category="lotus_notes")
    plain("notes_name_only", "Fwd: Re: CP&L",
          "---------------------- Forwarded by Rebecca Griffin/NA/Enron on 03/27/2001 04:04 PM "
          "---------------------------\n\n\nKatherine Herrera\n03/26/2001 09:57 AM\n"
          "To:\tRebecca Griffin/NA/Enron@Enron\ncc:\t \n\nSubject:\tRe: CP&L\n\nText.\n",
          forward=True, email=None, name="Katherine Herrera", category="lotus_notes")
    plain("mailmate_forwarded_message", "Fwd: Integer consequat",
          "Forwarded message:\n\n> From: Quentin Blake <quentin.blake@mate-like.example>\n> To: bessie.berry@acme.example\n"
          "> Subject: Integer consequat\n> Date: Wed, 27 Oct 2021 09:31:00 +0000\n>\n> Body.\n",
          forward=True, email="quentin.blake@mate-like.example", name="Quentin Blake", category="other-client")
    plain("missive_mailto_angles", "Fwd: Order",
          "---------- Forwarded message ----------\nFrom: Thibault <thibault@missive-like.example<mailto:"
          "thibault@missive-like.example>>\nDate: July 19, 2022 at 3:09 PM\nTo: bessie.berry@acme.example\n"
          "Subject: Order\n\n> Body.\n",
          forward=True, email="thibault@missive-like.example", name="Thibault", category="other-client")
    plain("ionos_original_message_nbsp", "Fwd: Termin",
          f"> ---------- Original Message ----------\n> From: Hanna Vogel <hanna.vogel@ionos-like.example>\n"
          f"> To: \"bessie.berry@acme.example\" <bessie.berry@acme.example>\n> Date: 02/10/2023 4:52 PM EST\n"
          f"> Subject: Termin\n> {NBSP}\n> {NBSP}\n> Hallo.\n",
          forward=True, email="hanna.vogel@ionos-like.example", name="Hanna Vogel", category="other-client")
    plain("zoho_original_message_semicolon", "Fwd: Download policy document",
          "------------------- Original Message -------------------\nFrom: Aswanth P P <aswanth@gmail-like.example>;\n"
          "Received: Tue Feb 21 2023 10:10:33 GMT+0530 (India Standard Time)\n"
          "To: Customer Care <customercare@insure-like.example>;\nSubject: Download policy document\n\nPlease send.\n",
          forward=True, email="aswanth@gmail-like.example", name="Aswanth P P", category="other-client")
    plain("japanese_tensou_sjis", "Fwd: 見積書の送付",
          "---------- 転送メッセージ ----------\n差出人: 山田太郎 <taro.yamada@rei-kaisha.co.jp>\n"
          "送信日時: 2025年3月3日 9:00\n宛先: sam.agent@helpdesk-team.example\n件名: 見積書の送付\n\n"
          "お世話になっております。\n", charset="shift_jis",
          forward=True, email="taro.yamada@rei-kaisha.co.jp", name="山田太郎", category="cjk")
    plain("japanese_webmail_soushinmoto", "Fwd: 請求書",
          "-------- Forwarded Message --------\n送信元: seikyu@rei-kaisha.co.jp\n宛先: sam.agent@helpdesk-team.example\n"
          "件名: 請求書\n\n請求書を送付します。\n", charset="iso-2022-jp",
          forward=True, email="seikyu@rei-kaisha.co.jp", category="cjk")
    plain("korean_banner_jeondal", "전달: 견적서", outlook_block(
        "ko", "김민준 <minjun.kim@yeshi-hoesa.co.kr>", "견적서", "안녕하세요.\n"), charset="euc-kr",
        forward=True, email="minjun.kim@yeshi-hoesa.co.kr", name="김민준", category="cjk")

    # ---------------- Subject-prefix variety with separator-less (Outlook desktop) blocks
    subj_cases = [
        ("subj_external_tag_fw", "[EXTERNAL] FW: Offer", "en"),
        ("subj_aw_wg", "AW: WG: Rechnung", "de"),
        ("subj_tr_space_colon", "TR : Devis", "fr"),
        ("subj_fwd_lowercase", "fwd: quote", "en"),
        ("subj_doorst", "Doorst: offerte", "nl"),
        ("subj_videresend", "Videresend: Tilbud", "no"),
        ("subj_redir", "Redir.: Ofertă", "ro"),
        ("subj_ilt_dotted", "İLT: Teklif", "tr"),
        ("subj_zhuanfa_fullwidth", "转发：报价单", "zh"),
        ("subj_zhuanji", "轉寄: 報價單", "zh_tw"),
        ("subj_lenticular_tag", "【社外秘】FW: 見積書", "ja"),
        ("subj_counted_re_fw", "Re[2]: FW: Quote", "en"),
        ("subj_tovabbitas", "Továbbítás: Árajánlat", "hu"),
        ("subj_greek", "ΠΡΘ: Προσφορά", "en"),
        ("subj_fw_space_colon", "Fw : Proposal", "en"),
        ("subj_sv_vb_tag", "[Ärende 55] VB: Offert", "sv"),
    ]
    for fname, subj, loc in subj_cases:
        ploc = loc if loc in PEOPLE else "en"
        n, a, _ = person(ploc)
        blk_loc = loc if loc in OUTLOOK_BANNER else "en"
        if loc == "hu":
            block = new_outlook_block("hu", f"{n} <{a}>", ORIG_SUBJECT["hu"], "Üdv.\n")
        elif loc == "ro":
            block = owa_block(f"{n} <{a}>", ORIG_SUBJECT["ro"], "Salut.\n")
        else:
            block = outlook_block(blk_loc, f"{n} <{a}>", ORIG_SUBJECT[ploc], PEOPLE[ploc][2] + "\n", banner=False)
        charset = {"zh": "gb2312", "zh_tw": "big5", "ja": "shift_jis"}.get(loc, "utf-8")
        plain(fname, subj, block, charset=charset, forward=True, email=a, name=n, category="subject")

    # ---------------- HTML-only forwards
    html_only("html_owa_divrplyfwdmsg", "Fw: Meeting notes",
              '<html><body><div>FYI</div><div id="appendonsend"></div>'
              '<hr style="display:inline-block;width:98%" tabindex="-1">'
              '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" '
              'color="#000000"><b>From:</b> Carla Reyes &lt;carla.reyes@meet-notes.example&gt;<br>'
              '<b>Sent:</b> Wednesday, October 27, 2021 15:14<br><b>To:</b> Sam Agent &lt;sam.agent@helpdesk-team.example'
              '&gt;<br><b>Subject:</b> Meeting notes</font><div>&nbsp;</div></div>'
              '<div dir="ltr"><p>Notes attached.</p></div></body></html>',
              forward=True, email="carla.reyes@meet-notes.example", name="Carla Reyes", category="html")
    html_only("html_owa_x_divrplyfwdmsg_de", "WG: Angebot",
              '<html><body><div>Zur Info</div><hr tabindex="-1" style="display:inline-block; width:98%">'
              '<div id="x_divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" color="#000000" '
              'style="font-size:11pt"><b>Von:</b> Jürgen Müller &lt;j.mueller@beispiel-firma.de&gt;<br>'
              '<b>Gesendet:</b> Donnerstag, 28. Oktober 2021 12:46<br><b>An:</b> Sam Agent &lt;'
              'sam.agent@helpdesk-team.example&gt;<br><b>Betreff:</b> Angebot</font><div>&nbsp;</div></div>'
              '<div><p>Anbei das Angebot.</p></div></body></html>', charset="windows-1252", cte="quoted-printable",
              forward=True, email="j.mueller@beispiel-firma.de", name="Jürgen Müller", category="html")
    html_only("html_owa_behalf_list", "FW: [PATCH] fix",
              '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt">'
              '<b>From:</b> amd-gfx &lt;amd-gfx-bounces@lists.freedesktop-like.example&gt; on behalf of Alex Deucher '
              '&lt;alexander.deucher@amd-like.example&gt;<br><b>Sent:</b> Monday, March 3, 2025 9:00 AM<br>'
              '<b>To:</b> amd-gfx@lists.freedesktop-like.example<br><b>Subject:</b> [PATCH] fix</font></div>'
              '<div>Patch.</div>',
              forward=True, email="alexander.deucher@amd-like.example", name="Alex Deucher", category="html")
    html_only("html_outlook_desktop_mso", "FW: Lieferung",
              '<html><body lang=DE><div class=WordSection1><p class=MsoNormal>Siehe unten.</p>'
              '<div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">'
              '<p class=MsoNormal><b><span lang=DE>Von:</span></b><span lang=DE> Fritz Bauer '
              '[mailto:fritz.bauer@liefer-dienst.example] <br><b>Gesendet:</b> Freitag, 14. Oktober 2011 15:28<br>'
              '<b>An:</b> Sam Agent<br><b>Betreff:</b> Lieferung<o:p></o:p></span></p></div></div>'
              '<p class=MsoNormal>Die Lieferung kommt.<o:p></o:p></p></div></body></html>',
              charset="windows-1252", cte="quoted-printable",
              forward=True, email="fritz.bauer@liefer-dienst.example", name="Fritz Bauer", category="html")
    html_only("html_outlook_2003_hr", "FW: Report",
              '<html><body><div>See below</div><div><div class=OutlookMessageHeader lang=en-us dir=ltr align=left>'
              '<hr size=3 width="100%" align=center tabindex=-1><font face=Tahoma size=2><b>From:</b> '
              'Greg House [mailto:greg.house@report-co.example] <br><b>Sent:</b> Monday, April 02, 2012 5:44 PM<br>'
              '<b>To:</b> Sam Agent<br><b>Subject:</b> Report<br></font><br></div><div>Report attached.</div></div>'
              '</body></html>', charset="iso-8859-1",
              forward=True, email="greg.house@report-co.example", name="Greg House", category="html")
    html_only("html_gmail_quote_fr", "Fwd: Hey !",
              '<div dir="ltr"><br><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
              '---------- Forwarded message ---------<br>De : <b class="gmail_sendername" dir="auto">Enguerran Weiss'
              '</b> <span dir="auto">&lt;<a href="mailto:enguerran.weiss@gmail-like.example">enguerran.weiss@'
              'gmail-like.example</a>&gt;</span><br>Date: mer. 28 juin 2023 à 09:57<br>Subject: Hey !<br>'
              'To: &lt;<a href="mailto:tristan@reply-dev.example">tristan@reply-dev.example</a>&gt;<br></div><br><br>'
              '<div dir="ltr">Salut !</div></div></div>',
              forward=True, email="enguerran.weiss@gmail-like.example", name="Enguerran Weiss", category="html")
    html_only("html_gmail_old_strong", "Fwd: Launch",
              '<div>FYI<br><br><div class="gmail_quote">---------- Forwarded message ----------<br>From: '
              '<strong class="gmail_sendername">Rita Moreno</strong> &lt;<a href="mailto:rita.moreno@launch-co.example">'
              'rita.moreno@launch-co.example</a>&gt;<br>Date: Mon, Apr 2, 2012 at 5:44 PM<br>Subject: Launch<br>'
              'To: <a href="mailto:sam.agent@helpdesk-team.example">sam.agent@helpdesk-team.example</a><br><br>'
              'We launch Monday.</div></div>',
              forward=True, email="rita.moreno@launch-co.example", name="Rita Moreno", category="html")
    html_only("html_gmail_no_display_name", "Fwd: Alert",
              '<div dir="ltr"><div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded message '
              '---------<br>From: <span dir="auto">&lt;<a href="mailto:alerts@bank-like.example">alerts@bank-like.'
              'example</a>&gt;</span><br>Date: Wed, Oct 27, 2021 at 9:31 AM<br>Subject: Alert<br>To: &lt;<a href='
              '"mailto:sam.agent@helpdesk-team.example">sam.agent@helpdesk-team.example</a>&gt;<br></div><br>'
              '<div>Login detected.</div></div></div>',
              forward=True, email="alerts@bank-like.example", category="html")
    html_only("html_apple_blockquote", "Fwd: Tickets",
              '<html><body dir="auto"><div>FYI</div><div><br><blockquote type="cite"><div>Begin forwarded message:</div>'
              '<br class="Apple-interchange-newline"><div style="margin-top: 0px; margin-right: 0px; margin-bottom: 0px; '
              'margin-left: 0px;"><span style="font-family: -webkit-system-font; color: rgba(0, 0, 0, 1.0);"><b>From: '
              '</b></span><span style="font-family: -webkit-system-font;">Concert Hall &lt;<a href="mailto:'
              'tickets@concert-hall.example">tickets@concert-hall.example</a>&gt;<br></span></div>'
              '<div style="margin: 0px;"><span><b>Subject: </b></span><span><b>Your tickets</b><br></span></div>'
              '<div style="margin: 0px;"><span><b>Date: </b></span><span>17 May 2023 at 22:36:20 CEST<br></span></div>'
              '<div style="margin: 0px;"><span><b>To: </b></span><span>sam.agent@helpdesk-team.example<br></span></div>'
              '<br><div><div>Enjoy the show.</div></div></blockquote></div></body></html>',
              forward=True, email="tickets@concert-hall.example", name="Concert Hall", category="html")
    html_only("html_thunderbird_moz_table", "Fwd: Sitzung",
              '<html><body><p>Zur Info<br></p><div class="moz-forward-container"><br><br>-------- Weitergeleitete '
              'Nachricht --------<table class="moz-email-headers-table" cellspacing="0" cellpadding="0" border="0">'
              '<tbody><tr><th valign="BASELINE" nowrap="nowrap" align="RIGHT">Betreff: </th><td>Sitzung</td></tr>'
              '<tr><th valign="BASELINE" nowrap="nowrap" align="RIGHT">Datum: </th><td>Wed, 3 Nov 2021 15:51:30 '
              '+0100</td></tr><tr><th valign="BASELINE" nowrap="nowrap" align="RIGHT">Von: </th><td>Klaus Weber '
              '<a class="moz-txt-link-rfc2396E" href="mailto:klaus.weber@sitzung-ev.example">&lt;klaus.weber@'
              'sitzung-ev.example&gt;</a></td></tr><tr><th valign="BASELINE" nowrap="nowrap" align="RIGHT">An: </th>'
              '<td><a class="moz-txt-link-abbreviated" href="mailto:sam.agent@helpdesk-team.example">'
              'sam.agent@helpdesk-team.example</a></td></tr></tbody></table><br><br>Die Sitzung ist verschoben.</div>'
              '</body></html>',
              forward=True, email="klaus.weber@sitzung-ev.example", name="Klaus Weber", category="html")
    html_only("html_zimbra_hr", "Fwd: Test",
              '<html><body><div>fyi</div><hr id="zwchr"><b>From: </b>bob@zimbra-like.example<br><b>To: </b>'
              'sam.agent@helpdesk-team.example<br><b>Sent: </b>Monday, April 2, 2012 5:44:22 PM<br><b>Subject: '
              '</b>Test<br><br>Hello</body></html>',
              forward=True, email="bob@zimbra-like.example", category="html")
    html_only("html_aol_original_message", "Fwd: Test",
              '<font color="black" size="2" face="arial">fyi<br><br>-----Original Message-----<br> From: bob '
              '&lt;bob@aol-like.example&gt;<br> To: xxx &lt;xxx@aol-like.example&gt;<br> Sent: Mon, Apr 2, 2012 5:49 pm'
              '<br> Subject: Test<br><br>Hello</font>',
              forward=True, email="bob@aol-like.example", name="bob", category="html")
    html_only("html_yahoo_quoted", "Fw: Pakkumine",
              '<html><body><div class="ydp1"><div></div><div class="yahoo_quoted" id="yahoo_quoted_123">'
              '<div style="font-family:Helvetica"><div>----- Forwarded Message -----</div><div><b><span>From:</span>'
              '</b> Mari Tamm &lt;mari.tamm@naidis-firma.ee&gt;</div><div><b><span>To:</span></b> '
              '"sam.agent@helpdesk-team.example" &lt;sam.agent@helpdesk-team.example&gt;</div><div><b><span>Sent:'
              '</span></b> Tuesday, November 2, 2021, 09:26:50 AM GMT+1</div><div><b><span>Subject:</span></b> '
              'Pakkumine</div><div><br></div><div>Saadan pakkumise.</div></div></div></div></body></html>',
              forward=True, email="mari.tamm@naidis-firma.ee", name="Mari Tamm", category="html")
    alternative("alt_outlook_text_and_html_pl", "PD: Oferta",
                "Do wiadomości.\n\n" + outlook_block("pl", "Łukasz Wójcik <lukasz.wojcik@przyklad-firma.pl>", "Oferta",
                                                      "Przesyłam ofertę.\n", banner=False),
                '<div>Do wiadomości.</div><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm'
                ' 0cm"><p class=MsoNormal><b>Od:</b> Łukasz Wójcik &lt;lukasz.wojcik@przyklad-firma.pl&gt;<br><b>'
                'Wysłano:</b> wtorek, 11 stycznia 2022 15:34<br><b>Do:</b> Sam Agent<br><b>Temat:</b> Oferta</p>'
                '</div><p>Przesyłam ofertę.</p>', charset="iso-8859-2", cte="quoted-printable",
                forward=True, email="lukasz.wojcik@przyklad-firma.pl", name="Łukasz Wójcik", category="html")

    # ---------------- message/rfc822 and redirects
    inner = (f"From: {_addr('Jürgen Müller', 'j.mueller@beispiel-firma.de')}\nTo: {INBOX}\n"
             "Subject: =?utf-8?q?Rechnung_M=C3=A4rz?=\nDate: Mon, 03 Mar 2025 09:00:00 +0100\n"
             "Message-ID: <inner-1@beispiel-firma.de>\nMIME-Version: 1.0\n").encode() + leaf(
        "Anbei die Rechnung.\n", cte="quoted-printable")
    add("rfc822_attachment_rfc2047_name", message("WG: Rechnung März", multipart("mixed", [
        leaf("Siehe Anhang.\n"),
        b'Content-Type: message/rfc822; name="Rechnung.eml"\nContent-Disposition: attachment; filename="Rechnung.eml"\n'
        b"\n" + inner], "mix-1"), n=len(CASES)),
        forward=True, email="j.mueller@beispiel-firma.de", name="Jürgen Müller", category="rfc822")
    inner2 = (b"From: \"Support, Vendor\" <help@vendor-support.example>\nTo: sam.agent@helpdesk-team.example\n"
              b"Subject: Case 4411\nDate: Mon, 03 Mar 2025 09:00:00 +0100\nMessage-ID: <inner-2@vendor-support.example>\n"
              b"\nYour case was updated.\n")
    add("rfc822_as_octet_stream_eml", message("Fwd: Case 4411", multipart("mixed", [
        leaf("Forwarding as attachment.\n"),
        b'Content-Type: application/octet-stream; name="Case 4411.eml"\nContent-Transfer-Encoding: base64\n'
        b'Content-Disposition: attachment; filename="Case 4411.eml"\n\n' + base64.encodebytes(inner2)], "mix-2"),
        n=len(CASES)), forward=True, email="help@vendor-support.example", name="Support, Vendor", category="rfc822")
    inner3 = (b"From: Alexander Strakh <strakh@ispras-like.example>\nOrganization: ISP RAS\n"
              b"To: Huang Shijie <shijie8@gmail-like.example>\nSubject: Re: BUG: double mutex_unlock\n"
              b"Date: Wed, 15 Dec 2010 17:19:32 +0300\n\nThe bug is here.\n")
    add("rfc822_kmail_inline", message("Fwd: Re: BUG: double mutex_unlock", multipart("mixed", [
        leaf("\n\n"),
        b'Content-Type: message/rfc822;\n  name="forwarded message"\nContent-Transfer-Encoding: 7bit\n'
        b"Content-Description: Alexander Strakh <strakh@ispras-like.example>: Re: BUG: double mutex_unlock\n"
        b"Content-Disposition: inline\n\n" + inner3], "Boundary-00=_H7UONZKQu5o1qy5"), n=len(CASES)),
        forward=True, email="strakh@ispras-like.example", name="Alexander Strakh", category="rfc822")
    inner4 = (b"From: =?iso-8859-2?q?=A3ukasz_W=F3jcik?= <lukasz.wojcik@przyklad-firma.pl>\nTo: sam@x.example\n"
              b"Subject: Oferta\nDate: Mon, 03 Mar 2025 09:00:00 +0100\nMIME-Version: 1.0\n") + leaf(
        "Przesyłam ofertę.\n", charset="iso-8859-2", cte="base64")
    add("rfc822_only_part_no_text", message("Oferta", multipart("mixed", [
        b'Content-Type: message/rfc822\nContent-Disposition: attachment; filename="Oferta.eml"\n\n' + inner4],
        "mix-4"), n=len(CASES)),
        forward=True, email="lukasz.wojcik@przyklad-firma.pl", name="Łukasz Wójcik", category="rfc822")
    add("resent_redirect_apple", (
        "Resent-From: Sam Agent <sam.agent@helpdesk-team.example>\nResent-Date: Tue, 04 Mar 2025 10:15:00 +0100\n"
        f"Resent-To: {INBOX}\nResent-Message-ID: <resent-1@helpdesk-team.example>\n"
        "From: Martin Test <martin.test@customer-site.example>\nTo: sam.agent@helpdesk-team.example\n"
        "Subject: Broken login\nDate: Mon, 03 Mar 2025 09:00:00 +0100\nMessage-ID: <orig-1@customer-site.example>\n"
        "MIME-Version: 1.0\n").encode() + leaf("I cannot log in.\n"),
        forward=True, email="martin.test@customer-site.example", name="Martin Test", category="resent")
    add("resent_redirect_qp_name", (
        "Resent-From: sam.agent@helpdesk-team.example\nResent-Date: Tue, 04 Mar 2025 10:15:00 +0100\n"
        f"Resent-To: {INBOX}\nFrom: =?utf-8?q?Ren=C3=A9e_Faure?= <renee.faure@client-fr.example>\n"
        "To: sam.agent@helpdesk-team.example\nSubject: Commande\nDate: Mon, 03 Mar 2025 09:00:00 +0100\n"
        "Message-ID: <orig-2@client-fr.example>\nMIME-Version: 1.0\n").encode() + leaf(
        "Où est ma commande ?\n", cte="quoted-printable"),
        forward=True, email="renee.faure@client-fr.example", name="Renée Faure", category="resent")

    # ---------------- Nested forwards and forwarded threads (reference section 6)
    plain("nested_gmail_of_apple_iphone", "Fwd: Buchungsbestätigung (Auftrag 9DDD99)",
          "---------- Forwarded message ---------\nFrom: Mister Someone <someone@example-family.example>\n"
          "Date: Thu, Jun 1, 2023 at 8:47 AM\nSubject: Fwd: Buchungsbestätigung (Auftrag 9DDD99)\n"
          "To: Miss Someone Else <someone.else@example-family.example>\n\n\n\n\nVon meinem iPhone gesendet\n\n"
          "Anfang der weitergeleiteten Nachricht:\n\n*Von:* noreply@booking-like.example\n"
          "*Datum:* 17. Mai 2023 um 22:36:20 MESZ\n*An:* someone@example-family.example\n"
          "*Betreff:* *Buchungsbestätigung (Auftrag 9DDD99)*\n*Antwort an:* noreply@booking-like.example\n\nDanke.\n",
          forward=True, email="noreply@booking-like.example", category="nested-fwd-of-fwd")
    plain("nested_owa_block_subject_fw", "FW: FW: Invoice overdue",
          owa_block("Kate Intern <kate@helpdesk-team.example>", "FW: Invoice overdue", "Please handle.\n\n" + owa_block(
              "Vendor Billing <billing@vendor-bills.example>", "Invoice overdue", "Invoice 77 is overdue.\n")),
          forward=True, email="billing@vendor-bills.example", name="Vendor Billing", category="nested-fwd-of-fwd",
          note="outer block Subject starts with FW: -> descend (reference 6 rule b)")
    plain("nested_apple_empty_outer", "Fwd: Fwd: Tickets",
          quote("Begin forwarded message:\n\nFrom: Partner <partner@family-mail.example>\nSubject: Fwd: Tickets\n"
                "Date: 17 May 2023 at 22:36:20 CEST\nTo: sam.agent@helpdesk-team.example\n\nSent from my iPhone\n\n"
                + quote("Begin forwarded message:\n\nFrom: Box Office <boxoffice@theatre-like.example>\n"
                        "Subject: Tickets\nDate: 16 May 2023 at 10:00:00 CEST\nTo: partner@family-mail.example\n\n"
                        "Your tickets.\n")),
          forward=True, email="boxoffice@theatre-like.example", name="Box Office", category="nested-fwd-of-fwd")
    plain("nested_thread_gmail_reply_inside", "Fwd: Re: Project timeline",
          "Can you pick this up?\n\n" + gmail_block(
              "en", "Alice Nguyen <alice.nguyen@client-corp.example>", "Re: Project timeline",
              "We agree with the plan.\n\nOn Mon, Mar 3, 2025 at 9:00 AM Bob Stone <bob.stone@other-corp.example> wrote:\n"
              + quote("What about the timeline?\n")),
          forward=True, email="alice.nguyen@client-corp.example", name="Alice Nguyen", category="nested-thread")
    plain("nested_thread_outlook_reply_blocks", "FW: RE: Budget",
          owa_block("Alice Nguyen <alice.nguyen@client-corp.example>", "RE: Budget",
                    "Approved.\n\n" + owa_block("Bob Stone <bob.stone@other-corp.example>", "Budget",
                                                "Please approve.\n")),
          forward=True, email="alice.nguyen@client-corp.example", name="Alice Nguyen", category="nested-thread")
    plain("nested_thread_new_outlook_reply_chain", "FW: RE: Delivery",
          new_outlook_block("en", "Valerie Stone <valerie.stone@client-corp.example>", "RE: Delivery",
                            "Confirmed.\n\nFrom: Omar Farouk <omar.farouk@carrier-co.example>\n"
                            "Date: Monday, 27 March 2023 at 15:33\nTo: Valerie Stone <valerie.stone@client-corp.example>\n"
                            "Subject: Delivery\nWhen can we deliver?\n"),
          forward=True, email="valerie.stone@client-corp.example", name="Valerie Stone", category="nested-thread")
    plain("nested_thread_thunderbird_original_message", "Fwd: Re: Angebot",
          thunderbird_block("de", "Jürgen Müller <j.mueller@beispiel-firma.de>", "AW: Angebot",
                            "Passt so.\n\n-----Ursprüngliche Nachricht-----\nVon: Sam Agent <sam.agent@helpdesk-team.example>\n"
                            "Gesendet: Montag, 3. März 2025 09:00\nAn: Jürgen Müller\nBetreff: Angebot\n\nHier das Angebot.\n"),
          forward=True, email="j.mueller@beispiel-firma.de", name="Jürgen Müller", category="nested-thread")
    plain("nested_gmail_block_fwd_subject_descend", "Fwd: Fwd: Warranty",
          gmail_block("en", "Tom Helper <tom.helper@friends-mail.example>", "Fwd: Warranty",
                      "See below, this came to me.\n\n" + gmail_block(
                          "en", "Warranty Desk <warranty@gadget-maker.example>", "Warranty", "Your claim is open.\n")),
          forward=True, email="tom.helper@friends-mail.example", name="Tom Helper", category="nested-fwd-of-fwd",
          note="the outer forwarder wrote a note: no descent (issue #3: step down only when the outer block is "
               "essentially empty and itself a forward; reference 6 rule b would descend)")
    plain("nested_outlook_wg_banner_descend", "WG: WG: Reklamation",
          outlook_block("de", "Kollege Klein <klein@helpdesk-team.example>", "WG: Reklamation", "Bitte übernehmen.\n\n"
                        + outlook_block("de", "Kundin Kraus <k.kraus@kundin-mail.example>", "Reklamation",
                                        "Das Gerät ist defekt.\n"), banner=False),
          forward=True, email="k.kraus@kundin-mail.example", name="Kundin Kraus", category="nested-fwd-of-fwd")
    plain("nested_mixed_gmail_thunderbird_quoted", "Fwd: Fwd: Spare parts", gmail_block(
        "en", "Pat Middle <pat.middle@reseller-co.example>", "Fwd: Spare parts", "\n" + quote(thunderbird_block(
            "en", "Parts Dept <parts@factory-like.example>", "Spare parts", "In stock.\n"))),
        forward=True, email="parts@factory-like.example", name="Parts Dept", category="nested-fwd-of-fwd")

    # ---------------- Batch 2 (added before any fix): harder shapes and artefacts
    plain("notes_hierarchical_from_line", "Fwd: sigcontext on Linux-ppc",
          "---------------------- Forwarded by Jane Kacur/Toronto/IBM on 01/25/2001\n10:06 AM "
          "---------------------------\n\nJohn Kacur\n01/24/2001 04:47 PM\n\nTo:   aj@suse-like.example\n"
          "cc:   aj@arthur-like.example\nFrom: John Kacur/Toronto/IBM@IBMCA\nSubject:  Re: [Fwd: sigcontext on "
          "Linux-ppc in user space]  (Document link:\n      John Kacur)\n\nText.\n",
          forward=True, email=None, name="John Kacur", category="lotus_notes",
          note="Notes hierarchical name is not an SMTP address")
    plain("gmail_uppercase_address", "Fwd: Shipping",
          gmail_block("en", "Shipping Desk <Shipping.Desk@BIG-Retailer.example>", "Shipping", "Shipped.\n"),
          forward=True, email="shipping.desk@big-retailer.example", name="Shipping Desk", category="from-shape")
    plain("gmail_name_with_at_sign", "Fwd: Ticket update",
          gmail_block("en", '"support@acme via Help Center" <help@helpcenter-like.example>', "Ticket update",
                      "Your ticket was updated.\n"),
          forward=True, email="help@helpcenter-like.example", name="support@acme via Help Center",
          category="from-shape")
    plain("outlook_addr_mailto_suffix", "FW: Alarm",
          "________________________________\nFrom: alarm@sensor-net.example<mailto:alarm@sensor-net.example>\n"
          "Sent: Wednesday, October 27, 2021 15:14\nTo: ops@helpdesk-team.example<mailto:ops@helpdesk-team.example>\n"
          "Subject: Alarm\n\nSensor 4 offline.\n",
          forward=True, email="alarm@sensor-net.example", category="from-shape")
    plain("gmail_wrapped_from_value", "Fwd: Statement",
          "---------- Forwarded message ---------\nFrom: Very Long Display Name Of The Customer Services Department\n"
          "<customer.services@long-corp.example>\nDate: Wed, Oct 27, 2021 at 9:31 AM\nSubject: Statement\n"
          "To: <sam.agent@helpdesk-team.example>\n\nStatement attached.\n",
          forward=True, email="customer.services@long-corp.example",
          name="Very Long Display Name Of The Customer Services Department", category="artefact-wrap")
    qp_text = ("---------- Forwarded message ---------\nFrom: Xavier Quincy-Longname <xavier.quincy-longname"
               "@very-long-domain-name-for-testing.example>\nDate: Wed, Oct 27, 2021 at 9:31 AM\nSubject: Soft breaks\n"
               "To: <sam.agent@helpdesk-team.example>\n\nBody.\n")
    add("gmail_qp_soft_break_in_address", message("Fwd: Soft breaks",
        b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
        + quopri.encodestring(qp_text.encode()), n=len(CASES)),
        forward=True, email="xavier.quincy-longname@very-long-domain-name-for-testing.example",
        name="Xavier Quincy-Longname", category="encoding")
    plain("outlook_markdown_double_star", "FW: Invoice 9",
          "**From:** Nadia Petrova <nadia.petrova@invoice-co.example>\n**Sent:** Monday, March 3, 2025 9:00 AM\n"
          "**To:** Sam Agent\n**Subject:** Invoice 9\n\nInvoice attached.\n",
          forward=True, email="nadia.petrova@invoice-co.example", name="Nadia Petrova", category="artefact-bold")
    plain("outlook_banner_crlf_base64", "FW: Zugang",
          outlook_block("de", "Jürgen Müller <j.mueller@beispiel-firma.de>", "Zugang", "Bitte freischalten.\n"),
          cte="base64", crlf=True, forward=True, email="j.mueller@beispiel-firma.de", name="Jürgen Müller",
          category="encoding")
    plain("hotmail_old_quoted_subject_first", "FW: Test",
          "fyi\n\n> Subject: Test\n> From: bob@hotmail-like.example\n> To: sam.agent@helpdesk-team.example\n"
          "> Date: Mon, 2 Apr 2012 17:44:22 +0400\n>\n> Hello\n",
          forward=True, email="bob@hotmail-like.example", category="other-client")
    plain("thunderbird_wrapped_subject_value", "Fwd: Two line subject",
          "-------- Forwarded Message --------\nSubject: \tTwo\nline subject\nDate: \tWed, 3 Nov 2021 15:51:30 +0100\n"
          "From: \tWinnie Ho <winnie.ho@wrap-test.example>\nTo: \tsam.agent@helpdesk-team.example\n\nBody.\n",
          forward=True, email="winnie.ho@wrap-test.example", name="Winnie Ho", category="artefact-wrap")
    alternative("alt_text_stub_html_forward", "Fwd: Webinar",
                "This message contains HTML. Please view it in an HTML-capable client.\n",
                '<div>fyi</div><div class="gmail_quote"><div dir="ltr" class="gmail_attr">---------- Forwarded message'
                ' ---------<br>From: <b class="gmail_sendername" dir="auto">Events Team</b> <span dir="auto">&lt;<a '
                'href="mailto:events@webinar-host.example">events@webinar-host.example</a>&gt;</span><br>Date: Wed, '
                'Oct 27, 2021 at 9:31 AM<br>Subject: Webinar<br>To: &lt;<a href="mailto:sam.agent@helpdesk-team.example'
                '">sam.agent@helpdesk-team.example</a>&gt;<br></div><br><div>Join us.</div></div>',
                forward=True, email="events@webinar-host.example", name="Events Team", category="html")
    html_only("html_outlook_2010_b5c4df_name_only", "FW: Rota",
              '<div class=WordSection1><p class=MsoNormal>FYI</p><div><div style="border:none;border-top:solid '
              '#B5C4DF 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class=MsoNormal><b><span lang=EN-US style="font-size:10.0pt">'
              'From:</span></b><span lang=EN-US style="font-size:10.0pt"> Harper, Lee <br><b>Sent:</b> Monday, March 3,'
              ' 2025 9:00 AM<br><b>To:</b> Sam Agent<br><b>Subject:</b> Rota<o:p></o:p></span></p></div></div>'
              '<p class=MsoNormal>New rota attached.</p></div>',
              forward=True, email=None, name="Harper, Lee", category="html",
              note="Exchange-internal sender: name only")
    html_only("html_outlook_ja_localised", "FW: 見積書の送付",
              '<div><p>ご確認ください。</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0mm 0mm 0mm">'
              '<p class=MsoNormal><b>差出人<span lang=EN-US>:</span></b><span lang=EN-US> 山田太郎 &lt;taro.yamada@'
              'rei-kaisha.co.jp&gt; <br></span><b>送信日時<span lang=EN-US>:</span></b><span lang=EN-US> 2025年3月3日 '
              '9:00<br></span><b>宛先<span lang=EN-US>:</span></b><span lang=EN-US> Sam Agent<br></span><b>件名<span '
              'lang=EN-US>:</span></b><span lang=EN-US> 見積書の送付</span></p></div><p>見積書を送付いたします。</p></div>',
              charset="shift_jis", cte="base64",
              forward=True, email="taro.yamada@rei-kaisha.co.jp", name="山田太郎", category="html")
    plain("yahoo_fr_nbsp", "Fw: Devis",
          YAHOO["fr"][0].join(["   ", " "]) + "De\u00a0: Amélie Dubois <amelie.dubois@exemple-societe.fr>À\u00a0: "
          "\"sam.agent@helpdesk-team.example\" <sam.agent@helpdesk-team.example>Envoyé\u00a0: mardi 2 novembre 2021, "
          "09:26:50 UTC+1Objet\u00a0: Devis\n Voici le devis.\n", charset="iso-8859-1",
          forward=True, email="amelie.dubois@exemple-societe.fr", name="Amélie Dubois", category="yahoo")
    plain("apple_depth2_forwarder_comment", "Fwd: Rückruf",
          "Bitte zurückrufen.\n\n" + quote(quote(apple_block(
              "de", "Kundin Kraus <k.kraus@kundin-mail.example>", "Rückruf", "Bitte rufen Sie mich an.\n"))),
          forward=True, email="k.kraus@kundin-mail.example", name="Kundin Kraus", category="artefact-quote")
    plain("outlook_from_label_tab_aligned", "FW: Roster",
          "-----Original Message-----\nFrom:\t\tRaj Patel <raj.patel@roster-co.example>\nSent:\t\tMonday, March 3, 2025 "
          "9:00 AM\nTo:\t\tSam Agent\nSubject:\tRoster\n\nRoster attached.\n",
          forward=True, email="raj.patel@roster-co.example", name="Raj Patel", category="artefact-tab")
    plain("fwd_comment_mentions_address_above_block", "Fwd: Refund",
          "Customer asked for refund, cc billing@helpdesk-team.example please.\n\n" + gmail_block(
              "en", "Mia Wong <mia.wong@shopper-mail.example>", "Refund", "I want a refund.\n"),
          forward=True, email="mia.wong@shopper-mail.example", name="Mia Wong", category="gmail")
    plain("new_outlook_from_after_blankline_reply_above_fw", "FW: Contrato",
          "Reenvío para su gestión.\n\nDe: Iñigo Martínez <inigo.martinez@empresa-ejemplo.es>\n"
          "Fecha: jueves, 28 de octubre de 2021, 12:46\nPara: Sam Agent <sam.agent@helpdesk-team.example>\n"
          "Asunto: Contrato\nAdjunto el contrato.\n",
          forward=True, email="inigo.martinez@empresa-ejemplo.es", name="Iñigo Martínez", category="new_outlook")

    # ============================================================================================
    # NEGATIVES
    # ============================================================================================
    neg = dict(forward=False, email=None)
    plain("neg_gmail_reply_fr_a_ecrit", "Re: Devis",
          "Merci !\n\nLe mer. 27 oct. 2021 à 09:31, Amélie Dubois <amelie.dubois@exemple-societe.fr> a écrit :\n\n"
          "> Voici le devis.\n", category="neg-reply", **neg)
    plain("neg_gmail_reply_ru", "Re: Счёт",
          "Спасибо.\n\nср, 30 апр. 2025 г. в 15:19, Дмитрий Иванов <d.ivanov@primer-kompania.ru>:\n\n> Счёт во вложении.\n",
          charset="koi8-r", category="neg-reply", **neg)
    plain("neg_gmail_reply_ja", "Re: 見積書",
          "ありがとうございます。\n\n2018年5月15日(火) 18:36 山田太郎 <taro.yamada@rei-kaisha.co.jp>:\n\n> 見積書です。\n",
          charset="iso-2022-jp", category="neg-reply", **neg)
    plain("neg_list_digest", "support-users Digest, Vol 12, Issue 3",
          "Today's Topics:\n\n   1. Login issue (Kim Lee)\n\n----------------------------------------------------------------"
          "------\n\nMessage: 1\nDate: Mon, 3 Mar 2025 09:00:00 +0100\nFrom: Kim Lee <kim.lee@customer-site.example>\n"
          "To: support-users@lists-like.example\nSubject: Login issue\n\nI cannot log in.\n",
          extra="List-Id: <support-users.lists-like.example>\nPrecedence: list\n",
          sender=("support-users", "support-users-bounces@lists-like.example"), category="neg-digest", **neg)
    plain("neg_reply_de_aw_ursprungliche_html_less", "AW: Termin",
          "Hallo Frau Vogel,\n\nder Termin passt.\n\nMit freundlichen Grüßen\nSam\n\n"
          "Von: Hanna Vogel [mailto:hanna.vogel@ionos-like.example]\nGesendet: Montag, 3. März 2025 09:00\n"
          "An: Sam Agent\nBetreff: Termin\n\nPasst Dienstag?\n", charset="iso-8859-1", category="neg-reply-outlook",
          **neg)
    plain("neg_gmail_reply_on_wrote", "Re: Quarterly figures",
          "That's true!\n\nRegards,\n\ne.\n\nOn Wed, Oct 27, 2021 at 9:31 AM Laura Singleton "
          "<laura.singleton@dayrep-mail.com>\nwrote:\n\n> Unicum iter ad supremum.\n>\n", category="neg-reply", **neg)
    plain("neg_apple_reply", "Re: Lunch",
          "Sounds good.\n\n> On 25 Oct 2021, at 11:43, Nora Quinn <nora.quinn@cater-co.example> wrote:\n>\n"
          "> Lunch at noon?\n", category="neg-reply", **neg)
    plain("neg_thunderbird_reply", "Re: Sitzung",
          "Passt.\n\nOn 03/11/2021 15:51, Klaus Weber wrote:\n> Die Sitzung ist verschoben.\n",
          category="neg-reply", **neg)
    plain("neg_yahoo_reply", "Re: Teklif",
          "Teşekkürler.\n  On Tuesday, November 2, 2021, 03:01:36 PM GMT+1, Çağlar Öztürk "
          "<caglar.ozturk@ornek-sirket.com.tr> wrote:\n\nTeklifi ekte gönderiyorum.\n", category="neg-reply", **neg)
    plain("neg_outlook_live_reply_re", "Re: Integer consequat non purus",
          "That's true!\n\nRegards,\n\ne.\n\n" + owa_block(
              "John Doe <john.doe@acme-corp.example>", "Integer consequat non purus", "Unicum iter ad supremum.\n"),
          category="neg-reply-outlook", **neg)
    plain("neg_outlook_banner_reply_en", "RE: Quote",
          "Thanks, approved.\n\n" + outlook_block("en", "Laura Singleton [mailto:laura.singleton@dayrep-mail.com]",
                                                  "Quote", "Can you approve?\n"),
          category="neg-reply-outlook", **neg)
    plain("neg_outlook_banner_reply_de_aw", "AW: Rechnung",
          "Danke, erledigt.\n\n" + outlook_block("de", "Jürgen Müller <j.mueller@beispiel-firma.de>", "Rechnung",
                                                 "Bitte prüfen.\n"),
          charset="windows-1252", category="neg-reply-outlook", **neg)
    plain("neg_outlook_nobanner_reply_fr", "RE : Devis",
          "Merci, c'est noté.\n\n" + outlook_block("fr", "Amélie Dubois <amelie.dubois@exemple-societe.fr>", "Devis",
                                                   "Voici le devis.\n", banner=False),
          category="neg-reply-outlook", **neg)
    plain("neg_outlook_nobanner_reply_es", "RE: Factura",
          "Gracias.\n\n" + outlook_block("es", "Iñigo Martínez <inigo.martinez@empresa-ejemplo.es>", "Factura",
                                         "Adjunto.\n", banner=False), category="neg-reply-outlook", **neg)
    plain("neg_outlook_reply_sv_sv", "SV: Offert",
          "Tack!\n\n" + outlook_block("sv", "Åsa Lindqvist <asa.lindqvist@exempel-bolag.se>", "Offert",
                                      "Här är offerten.\n", banner=False), category="neg-reply-outlook", **neg)
    plain("neg_outlook_reply_fi_vs", "VS: Tarjous",
          "Kiitos!\n\n" + outlook_block("fi", "Päivi Mäkinen <paivi.makinen@esimerkki-yhtio.fi>", "Tarjous",
                                        "Tässä tarjous.\n", banner=False), category="neg-reply-outlook",
          note="VS: is the Finnish REPLY prefix (reference 8.1); the labels are Finnish", **neg)
    plain("neg_outlook_reply_it_r", "R: Preventivo",
          "Grazie.\n\n" + outlook_block("it", "Giulia Ricci <giulia.ricci@esempio-azienda.it>", "Preventivo",
                                        "Ecco il preventivo.\n"), category="neg-reply-outlook", **neg)
    plain("neg_outlook_reply_ptbr_res", "RES: Orçamento",
          "Obrigado.\n\n" + outlook_block("pt_br", "Luíza Araújo <luiza.araujo@exemplo-loja.com.br>", "Orçamento",
                                          "Segue.\n", banner=False), category="neg-reply-outlook", **neg)
    plain("neg_outlook_reply_zh_huifu", "回复：报价单",
          "收到，谢谢。\n\n" + outlook_block("zh", "王小明 <xiaoming.wang@shili-gongsi.cn>", "报价单", "请查收。\n"),
          charset="gb2312", category="neg-reply-outlook", **neg)
    plain("neg_qq_reply_huifu", "回复：会议",
          "好的。\n\n------------------ 原始邮件 ------------------\n发件人: \"Kevin Zhao\" <kevin.zhao@qq-like.example>;\n"
          "发送时间: 2025年4月8日(星期二) 晚上8:43\n收件人: \"Sam\" <sam.agent@helpdesk-team.example>;\n主题: 会议\n\n"
          "会议纪要。\n", category="neg-reply-outlook", **neg)
    plain("neg_samsung_reply_original_message", "Re: Abc has sent you a message!",
          "Tak!\n\nSendt fra min Galaxy\n\n-------- Oprindelig besked --------\nFra: A B C <abc@abc-org.example>\n"
          "Dato: 04.07.2024  17.45  (GMT+01:00)\nTil: abc@abc-dk.example\nEmne: Abc has sent you a message!\n\nHej.\n",
          category="neg-reply", **neg)
    plain("neg_outlook_mac_attribution_reply", "Re: Quarterly figures",
          f"{BOM}Fine by me.\n\nOn 28/10/2021 12:46, \"Laura Singleton\" <laura.singleton@dayrep-mail.com> wrote:\n\n"
          "    Numbers attached.\n", crlf=True, category="neg-reply", **neg)
    add("neg_auto_reply_quoting_block", message("Automatic reply: Invoice", leaf(
        "I am out of the office until Monday.\n\n________________________________\n"
        "From: Customer Person <customer@customer-site.example>\nSent: Monday, March 3, 2025 9:00 AM\n"
        "To: sam.agent@helpdesk-team.example\nSubject: Invoice\n\nWhere is my invoice?\n"),
        extra="Auto-Submitted: auto-replied\nX-Auto-Response-Suppress: All\n", n=len(CASES)),
        category="neg-auto-reply", **neg)
    add("neg_auto_reply_ooo_fwd_subject", message("Out of Office: Fwd: Report", leaf(
        "Thank you for your message. I am on leave.\n\n---------- Forwarded message ---------\n"
        "From: Reporter <reporter@news-like.example>\nDate: Wed, Oct 27, 2021 at 9:31 AM\nSubject: Report\n"
        "To: <sam.agent@helpdesk-team.example>\n\nReport text.\n"),
        extra="Auto-Submitted: auto-replied\nPrecedence: auto_reply\n", n=len(CASES)),
        category="neg-auto-reply", **neg)
    plain("neg_fw_subject_no_block", "FW: quick question", "Hi,\n\ncan you call me back about the contract?\n\n"
          "Thanks\nSam\n", category="neg-subject-only", **neg)
    plain("neg_fwd_subject_no_block_de", "WG: Rechnung", "Hallo,\n\nbitte die Rechnung bis Freitag bezahlen.\n\n"
          "Gruß\n", category="neg-subject-only", **neg)
    plain("neg_fwd_subject_link_only", "Fwd: article", "Thought you'd like this: https://news-like.example/a/123\n",
          category="neg-subject-only", **neg)
    plain("neg_signature_from_line", "Question about pricing",
          "Hello,\n\nwhat is the price for 20 seats?\n\n--\nJane Roe | Sales\nFrom: Berlin office\n"
          "Tel: +49 30 1234567\nEmail: jane.roe@customer-site.example\n", category="neg-signature", **neg)
    plain("neg_signature_outlook_style", "Meeting",
          "Let's meet Tuesday.\n\nBest,\nJane\n\nFrom: Jane Roe <jane.roe@customer-site.example>\n"
          "Head of Purchasing\nCustomer Site GmbH\n", category="neg-signature", **neg)
    plain("neg_to_cc_only_block", "Update sent",
          "FYI I sent the update to the following:\n\nTo: alpha@partner-org.example\nCc: beta@partner-org.example\n"
          "Subject: Update\n\nLet me know if anyone is missing.\n", category="neg-to-cc", **neg)
    plain("neg_running_text_address", "Contact",
          "Please contact John Doe <john.doe@acme-corp.example> from the sales team, or write to "
          "sales@acme-corp.example.\nFrom what I heard, he is back on Monday.\n", category="neg-running-text", **neg)
    plain("neg_from_to_schedule", "Opening hours",
          "Our new opening hours:\nFrom: Monday\nTo: Friday\nSent: by post\nSubject: to change\n",
          category="neg-running-text", **neg)
    plain("neg_original_message_no_from", "Notes",
          "Pasting my notes:\n\n-----Original Message-----\nthe call went fine, next steps attached.\n",
          category="neg-running-text", **neg)
    plain("neg_underscores_signature_separator", "Support request",
          "My printer is broken.\n\n________________________________\n\nJohn Doe\n400 Broadway\nSanta Monica, CA\n\n"
          "________________________________\nThis email is confidential.\n", category="neg-signature", **neg)
    html_only("neg_html_gmail_reply", "Re: Launch",
              '<div dir="ltr">Great!</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, Apr 2, '
              '2012 at 5:44 PM Rita Moreno &lt;<a href="mailto:rita.moreno@launch-co.example">rita.moreno@launch-co.'
              'example</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">We '
              'launch Monday.</blockquote></div>', category="neg-reply-html", **neg)
    html_only("neg_html_owa_reply", "RE: Meeting notes",
              '<div>Thanks!</div><hr style="display:inline-block;width:98%" tabindex="-1"><div id="divRplyFwdMsg" '
              'dir="ltr"><font face="Calibri, sans-serif"><b>From:</b> Carla Reyes &lt;carla.reyes@meet-notes.example'
              '&gt;<br><b>Sent:</b> Wednesday, October 27, 2021 15:14<br><b>To:</b> Sam Agent<br><b>Subject:</b> '
              'Meeting notes</font><div>&nbsp;</div></div><div>Notes.</div>', category="neg-reply-html", **neg)
    html_only("neg_html_thunderbird_reply", "Re: Sitzung",
              '<p>Ok.</p><div class="moz-cite-prefix">On 03/11/2021 15:51, Klaus Weber wrote:<br></div><blockquote '
              'type="cite" cite="mid:x@y">Die Sitzung ist verschoben.</blockquote>', category="neg-reply-html", **neg)
    plain("neg_newsletter_from_heading", "Monthly newsletter",
          "Monthly newsletter\n\nFrom: the CEO\nDate: March 2025\n\nDear customers, this month we launched...\n",
          category="neg-running-text", **neg)
    plain("neg_plain_customer_mail", "Order 5512 missing", "Hi, my order 5512 has not arrived yet. "
          "Order date: 1 March.\nRegards,\nKim\n", sender=("Kim Lee", "kim.lee@customer-site.example"),
          category="neg-plain", **neg)


def main() -> None:
    build()
    for old in HERE.glob("*.eml"):
        old.unlink()
    expected = {}
    for fname, (raw, exp) in sorted(CASES.items()):
        (HERE / fname).write_bytes(raw)
        expected[fname] = exp
    (HERE / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    pos = sum(e["forward"] for e in expected.values())
    print(f"wrote {len(expected)} messages ({pos} forwards, {len(expected) - pos} negatives)")


if __name__ == "__main__":
    main()
