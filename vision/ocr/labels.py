"""What invoice labels say: synonym tables for every field, in English and Chinese, and the
column titles of item tables. Shared by the layout extractor; no Django.

The tables are the wording real invoices use (and a few distractor labels whose numbers must not
be taken for a field), not the wording of any one generator or template. Add a synonym here, not a
special case in the extractor.
"""

from __future__ import annotations

import re

# Tried in this order at each position of a line: Python's alternation takes the first alternative
# that matches there, so "Subtotal" is not "Total", "VAT No" is not "VAT", "Due Date" is not "Date",
# "价税合计" is not "合计", "Total HT" is a subtotal, "Kundennummer" a reference and not the buyer.
# finditer scans left to right, so "Total due" is a total (its match starts at "Total"), while
# "Due" alone is a due date.
#
# Languages: English, German, French, Dutch, Spanish, Italian, Portuguese, Polish, Swedish,
# Danish (and Norwegian where it shares the word), Chinese, Japanese. Each field's alternatives
# are listed by language in that order; a word two fields share is placed where invoices use it.
_NO = r"(?:n[°ºo]\.?|n\.(?=\s)|no\b\.?|nr\b\.?|num\b\.?|nº|n\.º|#|number|nummer|numero|número|numéro|numer)"
LABELS: list[tuple[str, str]] = [
    # numbers next to these are never a field: references, contact and bank details, registers, pages
    ("other_ref", "|".join([
        r"(?:order|po|p\.o\.|purchase\s*order|customer|client|account|acct|delivery|ref(?:erence)?)\s*(?:no\b\.?|number|num\b|#|id\b)|\breference\b|\bref\b\.?|\biban\b|\bbic\b|\bswift\b|\breg\.?\s*no\b\.?|\bphone\b|\btel\b\.?|\bfax\b|\bpage\s+\d|\bmobile\b",
        r"kunden\s*-?\s*(?:nr\b\.?|nummer|id\b)|bestell\s*-?\s*(?:nr\b\.?|nummer)|auftrags?\s*-?\s*(?:nr\b\.?|nummer)|lieferschein\s*-?\s*(?:nr\b\.?|nummer)?|vertrags\s*-?\s*(?:nr\b\.?|nummer)|\btelefon\b|\bhandelsregister\b|\bamtsgericht\b|\bhrb\b|\bseite\s+\d|\bbankverbindung\b",
        r"(?:n[°º]|num[ée]ro)\s*(?:de\s*)?(?:client|commande|contrat|abonn[ée]|ligne)|\bclient\s*n[°º]|\br[ée]f[ée]rence\b|\bt[ée]l\b\.?|\bsiret\b|\bsiren\b|\brcs\b|\bcode\s*ape\b",
        r"klant\s*-?\s*(?:nr\b\.?|nummer)|order\s*-?\s*nummer|bestel\s*-?\s*nummer|\bkvk\b|\bkvk-?nummer\b|\btelefoon\b",
        r"(?:n[°º]|n[úu]mero|num\.?)\s*(?:de\s*)?(?:cliente|pedido|albar[áa]n|ordine|encomenda)|\bpedido\b|codice\s*cliente|\btel[ée]fono\b|\btelefone\b",
        r"nr\.?\s*zam[óo]wienia|numer\s*zam[óo]wienia|\bkrs\b|\bregon\b|\bkund\s*-?\s*(?:nr|nummer)|\bkunde\s*-?\s*(?:nr|nummer)|\bordre\s*-?\s*nr|\borg\.?\s*-?\s*nr",
        r"电话|开户行及账号|地\s*址|注文番号|電話",
    ])),
    # dates that are not the invoice's: an order, a delivery, a shipment ("Order Date" is not "Date")
    ("other_date", "|".join([
        r"(?:order|ordered|purchase|delivery|shipping|ship|dispatch|service)\s*date|date\s*of\s*(?:order|delivery|supply|service)",
        r"bestell\s*-?\s*datum|auftrags\s*-?\s*datum|liefer\s*-?\s*datum(?!\s*/\s*rechnungs)|leistungs\s*-?\s*datum|versand\s*-?\s*datum",
        r"date\s*(?:de\s*)?(?:la\s*)?(?:commande|livraison|exp[ée]dition)|order\s*-?\s*datum|besteldatum|leverdatum|leveringsdatum",
        r"fecha\s*(?:de\s*)?(?:pedido|entrega|env[íi]o)|data\s*(?:dell'|do\s*|de\s*|di\s*)?(?:ordine|consegna|pedido|entrega|encomenda)|data\s*zam[óo]wienia|data\s*dostawy|orderdatum|leveransdatum|bestillingsdato|leveringsdato",
    ])),
    # the tax's own total ("Total TVA", "USt. Gesamt", "VAT amount"): the tax, not the invoice total
    ("tax_total", "|".join([
        r"total\s*(?:tva|vat|tax|btw|iva|mwst|ust|gst)\b|(?:ust|mwst|vat|tax|tva|btw|iva|gst)\.?\s*-?\s*(?:gesamt|total|totaal|totale|summe|bedrag|betrag|amount|montant|importe|importo)\b|montant\s*(?:de\s*(?:la\s*)?)?tva",
    ])),
    ("invoice_number", "|".join([
        r"invoice\s*(?:no\b\.?|number|num\b|nr\b\.?|#|id\b)|inv\.?\s*(?:no\b\.?|number|#|nr\b)|bill\s*(?:no\b\.?|number|#)|receipt\s*(?:no\b\.?|number|#)|document\s*(?:no\b\.?|number)|credit\s*note\s*(?:no\b\.?|number|#)",
        r"rechnungs\s*-?\s*(?:nr\b\.?|nummer|no\b\.?)|rechnung\s*(?:nr\b\.?|nummer|no\b\.?|#)|beleg\s*-?\s*(?:nr\b\.?|nummer)|gutschrift\s*-?\s*(?:nr\b\.?|nummer)",
        rf"{_NO}\s*(?:de\s*)?(?:la\s*)?facture|facture\s*{_NO}|num[ée]ro\s*de\s*facture|\bnum[ée]ro\b(?!\s*(?:de\s*)?(?:tva|client|commande|siret|siren|contrat|abonn|ligne|d'|de\s*t[ée]l))",
        r"factuur\s*-?\s*(?:nr\b\.?|nummer|no\b\.?|#)|factuurnummer|factuurnr\b\.?",
        rf"{_NO}\s*(?:de\s*)?(?:la\s*)?(?:factura|fattura|fatura|nota\s*fiscal)|(?:factura|fattura|fatura|nota\s*fiscal)\s*{_NO}|numero\s*(?:di\s*)?fattura|n[úu]mero\s*d[ae]\s*(?:factura|fatura)",
        r"numer\s*faktury|nr\.?\s*faktury|faktura\s*(?:vat\s*)?(?:nr\b\.?|numer)|faktura\s*-?\s*(?:nr\b\.?|nummer)|fakturanummer|fakturanr\b\.?",
        r"发票号码|发票号|票据号码|請求書番号|請求番号|インボイス番号|伝票番号",
    ])),
    ("due_date", "|".join([
        r"due\s*date|payment\s*due|due\s*by|\bdue\b(?!\s*(?:amount|total))|pay\s*by|payable\s*by",
        r"f[äa]llig(?:keits(?:datum)?|\s*am|\s*bis|\s*zum)?\b|zahlbar\s*(?:bis|am)|zahlungsziel",
        r"date\s*d'[ée]ch[ée]ance|[ée]ch[ée]ance|[àa]\s*payer\s*avant(?:\s*le)?|date\s*limite\s*de\s*paiement",
        r"vervaldatum|verval\s*datum|uiterste\s*betaaldatum|te\s*betalen\s*v[óo][óo]r",
        r"fecha\s*(?:de\s*)?vencimiento|\bvencimiento\b|data\s*(?:di\s*)?scadenza|\bscadenza\b|data\s*(?:de\s*)?vencimento|\bvencimento\b",
        r"termin\s*p[łl]atno[śs]ci|f[öo]rfallodag|f[öo]rfallodatum|forfaldsdato|betalingsfrist|forfallsdato|er[äa]p[äa]iv[äa]",
        r"到期日期?|付款期限|支払期限|お支払期限|支払期日|お支払い期限",
    ])),
    ("invoice_date", "|".join([
        r"invoice\s*date|date\s*of\s*issue|issue\s*date|date\s*issued|\bissued\b(?!\s*by)|billing\s*date|tax\s*point(?:\s*date)?",
        r"rechnungs\s*-?\s*datum|belegdatum|ausstellungsdatum|\bdatum\b",
        r"date\s*(?:de\s*)?(?:la\s*)?(?:facture|facturation|d'[ée]mission|d'[ée]dition)|\bdate\b",
        r"factuur\s*-?\s*datum",
        r"fecha\s*(?:de\s*)?(?:la\s*)?(?:factura|emisi[óo]n|expedici[óo]n)|\bfecha\b|data\s*(?:della\s*|da\s*|de\s*|di\s*)?(?:fattura|fatura|emiss[ãa]o|emissione|documento)|\bdata\b",
        r"data\s*wystawienia|fakturadatum|fakturadato|\bdato\b",
        r"开票日期|日期|請求日|発行日|請求書発行日|日付",
    ])),
    ("tax_id", "|".join([
        r"vat\s*(?:no\b\.?|number|reg(?:istration)?\b\.?(?:\s*no\b\.?)?|id\b)|tax\s*(?:id|no\b\.?|number|reg)|\btin\b|\babn\b|\bgstin\b|gst\s*(?:no\b|number|reg|in\b)|\bpan\b(?:\s*no\b\.?)?",
        r"ust\.?\s*-?\s*id(?:ent)?\.?\s*-?\s*(?:nr\b\.?|nummer)?|ust\.?\s*-?\s*nr\b\.?|umsatzsteuer\s*-?\s*id(?:entifikationsnummer)?|steuer\s*-?\s*(?:nr\b\.?|nummer)|\buid\b(?:\s*-?\s*nr\b\.?)?|mwst\.?\s*-?\s*nr\b\.?",
        r"(?:n[°º]|num[ée]ro)\s*(?:de\s*)?tva(?:\s*intra(?:communautaire)?)?|tva\s*intra(?:communautaire)?|identifiant\s*tva",
        r"btw\s*-?\s*(?:nr\b\.?|nummer|id(?:entificatienummer)?\b)|btw\s*-?\s*nummer",
        r"\bn\.?i\.?f\b\.?|\bc\.?i\.?f\b\.?|partita\s*iva|p\.?\s*iva\b|codice\s*fiscale|\bnipc\b|contribuinte|\bnip\b|momsreg(?:istrerings)?\.?\s*-?\s*nr\b\.?|\bcvr\b(?:\s*-?\s*nr\b\.?)?|\bse\s*-?\s*nr\b|\bmva\b|\by-tunnus\b|\bdi[čc]\b",
        r"纳税人识别号|统一社会信用代码|税号|登録番号",
    ])),
    # amounts that sit near the totals but are not this invoice's subtotal, tax or total
    ("other_amount", "|".join([
        r"previous\s*balance|balance\s*(?:brought|carried)\s*forward|payments?\s*received|amount\s*paid|\bpaid\b|\bchange\b|\bcash\b|\bcard\b|\bvisa\b|\bmastercard\b|tendered|deposit|\bdiscount\b|\bshipping\b",
        r"bereits\s*(?:bezahlt|gezahlt)|anzahlung|\bbezahlt\b|\bskonto\b|\brabatt\b|d[ée]j[àa]\s*(?:pay[ée]|r[ée]gl[ée])|acompte|\bremise\b|reeds\s*betaald|\bbetaald\b|\bkorting\b|\bpagado\b|\bpagato\b|\bpago\b|\bsconto\b|\bdescuento\b|zap[łl]acono",
    ])),
    ("subtotal", "|".join([
        r"sub\s*-?\s*total|net\s*(?:amount|total|value)|total\s*(?:(?:excl\.?|excluding|before|w/o|without)\s*(?:vat|tax|gst)?|net)|\bnet\b(?!\s*[àa]\s*payer)|taxable\s*(?:value|amount)",
        r"zwischen\s*-?\s*summe|netto\s*-?\s*(?:betrag|summe|gesamt|rechnungsbetrag|wert)|(?:gesamt|rechnungs)?betrag\s*netto|(?:summe|gesamt)\s*netto|summe\s*(?:der\s*)?positionen|\bnetto\b",
        r"sous\s*-?\s*total|total\s*h\.?\s*t\.?\b|montant\s*(?:total\s*)?h\.?\s*t\.?\b|total\s*hors\s*taxes?|\bh\.?t\.?\b(?=[\s:]|$)",
        r"subtotaal|totaal\s*excl(?:usief|\.)?(?:\s*btw)?|bedrag\s*excl(?:usief|\.)?(?:\s*btw)?|\bexcl(?:usief|uding|\.)?\s*(?:btw|vat|tax)\b",
        r"base\s*imponible|total\s*sin\s*iva|importe\s*neto|subtotale|(?:totale\s*)?imponibile|totale\s*netto|base\s*tribut[áa]vel|valor\s*(?:sem\s*iva|l[íi]quido)|total\s*(?:sem|s/)\s*iva",
        r"warto[śs][ćc]\s*netto|razem\s*netto|suma\s*netto|delsumma|summa\s*exkl\.?(?:\s*moms)?|netto\s*belopp|\bi\s+alt\s*ekskl\.?(?:\s*moms)?|bel[øo]b\s*ekskl\.?(?:\s*moms)?|ekskl\.?\s*moms|exkl\.?\s*moms",
        r"金额合计|(?<!价税)合\s*计|小計|税抜(?:金額|合計)?",
    ])),
    ("total", "|".join([
        r"grand\s*total|total\s*(?:(?:incl\.?|including|with)\s*(?:vat|tax|gst)?|due|amount|payable|to\s*pay)|amount\s*(?:due|payable)|balance\s*due|invoice\s*total",
        r"gesamt\s*-?\s*(?:betrag|summe)(?:\s*brutto)?|rechnungs\s*-?\s*(?:betrag|summe)(?:\s*brutto)?|end\s*-?\s*(?:betrag|summe)|brutto\s*-?\s*(?:betrag|summe)?|zahlbetrag|zu\s*zahlen(?:der\s*betrag)?|(?:summe|gesamt)\s*brutto|\bgesamt\b|\bsumme\b",
        r"total\s*t\.?\s*t\.?\s*c\.?|montant\s*(?:total\s*)?t\.?\s*t\.?\s*c\.?|net\s*[àa]\s*payer|(?:total|montant)\s*[àa]\s*payer|montant\s*total|\bt\.?t\.?c\.?\b",
        r"totaal\s*-?\s*(?:bedrag|incl(?:usief|\.)?(?:\s*btw)?)?|bedrag\s*incl(?:usief|\.)?(?:\s*btw)?|te\s*betalen",
        r"importe\s*total|total\s*(?:factura|a\s*pagar|con\s*iva)|totale\s*(?:fattura|documento|da\s*pagare|complessivo)?|importo\s*(?:totale|da\s*pagare)|valor\s*total|total\s*a\s*pagar",
        r"do\s*zap[łl]aty|\brazem\b\s*(?:brutto|do\s*zap[łl]aty)?|warto[śs][ćc]\s*brutto|\bsuma\b|\batt\s*betala\b|\btotalt\b|totalbelopp|\bsumma\b|\bi\s+alt\b(?:\s*inkl\.?(?:\s*moms)?)?|\bat\s*betale\b|bel[øo]b\s*i\s*alt|totalbel[øo]b|\bå\s*betale\b",
        r"价税合计|合計金額|ご請求金額|請求金額|税込(?:合計|金額)|合計|\btotal\b",
    ])),
    ("tax", "|".join([
        r"sales\s*tax|\bvat\b|\bgst\b|\bhst\b|\bigst\b|\bcgst\b|\bsgst\b|\btax\b",
        r"\bmwst\b\.?|mehrwertsteuer|umsatzsteuer|\bust\b\.?",
        r"\btva\b|montant\s*tva|total\s*tva",
        r"\bbtw\b|btw\s*-?\s*bedrag",
        r"\biva\b|cuota\s*iva|\bimposta\b|\bimpuestos?\b|\bimposto\b",
        r"kwota\s*vat|\bpodatek\b|\bmoms\b|\bmva\b|\balv\b|\bdph\b",
        r"增值税|税\s*额|消費税|税額",
    ])),
    ("currency", r"\bcurrency\b|amounts?\s*in\b|\bw[äa]hrung\b|\bdevise\b|\bvaluta\b|\bmoneda\b|\bmoeda\b|\bwaluta\b|币种|通貨"),
    ("seller", "|".join([
        r"\b(?:from|seller|supplier|vendor|sold\s*by|issued\s*by|billed\s*by)\b",
        r"\b(?:verk[äa]ufer|lieferant|rechnungssteller|leistungserbringer|vendeur|fournisseur|[ée]metteur|verkoper|leverancier|vendedor|proveedor|emisor|venditore|fornitore|cedente|prestatore|fornecedor|sprzedawca|wystawca|s[äa]ljare|leverant[öo]r|s[æa]lger|leverand[øo]r)\b",
        r"销售方|销方|卖方|請求元|発行元",
    ])),
    ("buyer", "|".join([
        r"bill(?:ed)?\s*to|invoice\s*to|\bbuyer\b|\bcustomer\b|\bclient\b|sold\s*to|ship\s*to|deliver\s*to|(?:billing|invoice|invoicing)\s*address|guest\s*name",
        r"rechnungs\s*-?\s*(?:adresse|empf[äa]nger|anschrift)|\bkunde\b|\bk[äa]ufer\b|leistungsempf[äa]nger|bestellt\s*von|\bbesteller\b",
        r"factur[ée]\s*[àa]|adresse\s*de\s*facturation|\bacheteur\b|\bdestinataire\b",
        r"factuur\s*-?\s*adres|\bklant\b|\bkoper\b|\bafnemer\b",
        r"facturar\s*a|\bcliente\b|\bcomprador\b|\bdestinatario\b|intestatario|cessionario|committente|faturar\s*a",
        r"\bnabywca\b|\bodbiorca\b|\bkund\b|\bk[öo]pare\b|fakturaadress|\bk[øo]ber\b|faktureres\s*til",
        r"购买方|购方|买方|請求先|お客様",
    ])),
]  # fmt: skip
LABEL_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in LABELS), re.I)

COLUMNS: list[tuple[str, str]] = [
    (
        "tax_amount",
        r"税\s*额|(?:btw|mwst|ust|tva|iva|vat|moms)\s*-?\s*(?:bedrag|betrag|montant|importe|importo|amount|belopp|bel[øo]b)",
    ),
    (
        "tax_rate",
        r"tax\s*rate|vat\s*%|税率|(?:btw|mwst|ust|tva|iva|moms)\s*(?:%|satz|tarief|taux)|\b(?:btw|mwst|ust|tva|iva|vat|moms)\b(?!\s*(?:nr|nummer|id))",
    ),
    (
        "description",
        r"description|\bitems?\b|product|service|名称|项目|货物|品名|摘要|\bartikel(?:bezeichnung)?\b|omschrijving|bezeichnung|beschreibung|\bleistung\b|d[ée]signation|libell[ée]|descripci[óo]n|concepto|descrizione|descri[çc][ãa]o|\bopis\b|\bnazwa\b|beskrivning|ben[äa]mning|beskrivelse|\bvare\b|\bpozycja\b",
    ),
    (
        "quantity",
        r"\bqty\b|quantity|数\s*量|\baantal\b|\bmenge\b|\banzahl\b|qt[ée]|quantit[ée]|cantidad|\bcant\.|quantit[àa]|qt[àa]|quantidade|\bqtd\b|ilo[śs][ćc]|\bantal\b|\bantall\b|m[æa]ngde|\bstk\b",
    ),
    (
        "amount",
        r"(?:prijs|preis|prix|price|precio|prezzo|pre[çc]o|bedrag|betrag|montant)\s*(?:incl|inkl|ttc|total|gesamt)\S*(?:\s*(?:btw|mwst|vat|tva))?|gesamtpreis|\bgesamt\b|\btotaal\b|\bbedrag\b|\bbetrag\b|\bmontant\b|\bimporte\b|\bimporto\b|\bvalor\b|warto[śs][ćc]|\bbelopp\b|\bbel[øo]b\b|\bsumma\b|\btotale\b",
    ),
    (
        "unit_price",
        r"unit\s*price|\bprice\b|\brate\b|单\s*价|単価|prijs\s*per\s*stuk|stukprijs|einzelpreis|e-?preis|\bpreis\b|prix\s*unitaire|\bp\.?u\.?\b|\bprix\b|precio(?:\s*unitario)?|prezzo(?:\s*unitario)?|pre[çc]o(?:\s*unit[áa]rio)?|cena(?:\s*jedn\.?)?|[àa]-?pris|styckpris|enhedspris|\bpris\b|\bprijs\b",
    ),
    ("amount", r"\bamount\b|line\s*total|\btotal\b|金\s*额|金額"),
    (
        "other",
        r"\bunit\b|\buom\b|单位|规格型号|\beinheit\b|\bunit[ée]\b|\beenheid\b|\bunidad\b|\bunit[àa]\b|\bjm\b|\benhet\b|\benhed\b",
    ),
]
COLUMN_RES = [(name, re.compile(pattern, re.I)) for name, pattern in COLUMNS]

# The document's title in each language: a heading, never a party's name ("FACTUUR.", "RECHNUNG").
_TITLE_WORDS = (
    r"invoice|receipt|bill|credit\s*note|statement|rechnung|gutschrift|quittung|facture|avoir|re[çc]u|"
    r"factuur|creditnota|factura|fattura|fatura|nota\s*fiscal|recibo|ricevuta|faktura|rachunek|kvitto|kvittering"
)
TITLE = re.compile(
    rf"^\W*(?:(?:tax|commercial|proforma|pro\s*forma|vat|sales|original|duplicate|copy)\s*)?(?:{_TITLE_WORDS})"
    rf"(?:\s*(?:vat|ttc|acquittée|originale?|n[°º]?\s*\S+|nr\.?\s*\S+|nummer\s*\S+))?\W*$|发票|^收据$|^請求書|^領収書|^納品書",
    re.I,
)
# The title of an invoice (not a receipt, not a label such as 发票号码): such a page names a buyer.
INVOICE_TITLE = re.compile(
    r"^\W*(?:(?:tax|commercial|proforma|vat|sales)\s*)?(?:invoice|rechnung|facture|factuur|factura|fattura|fatura|faktura(?:\s*vat)?)\W*$"
    r"|^[^:：]*发票[）)]?$|^請求書$",
    re.I,
)
COMPANY = re.compile(
    r"(?i:\b(?:ltd|llc|llp|inc|gmbh|ug|co|corp|corporation|limited|plc|sasu?|ag|kg|ohg|gbr|e\.\s?k|bv|b\.v|nv|n\.v|"
    r"vof|sarl|s\.a\.r\.l|eurl|srl|s\.r\.l|s\.p\.a|spa|s\.l\.u?|lda|ltda|oyj?|a/s|aps|pty|pvt|sp\.?\s*z\s*o\.?\s*o)\b\.?)"
    r"|\b(?:AB|AS|ASA|SE|SA|S\.A|SL|SC)\b\.?|公司|株式会社|有限会社|合同会社"  # these only in capitals: "ab", "as", "se" are words
)
# A line that is an address, contact or legal detail rather than a name.
ADDRESS = re.compile(
    r"^\d+\s|\b(?:road|street|st\.|lane|avenue|ave|suite|floor|tel|phone|fax|email|e-mail|www\.|http|"
    r"stra(?:ss|ß)e|str\.|weg|platz|allee|gasse|ring|postfach|rue|bd|boulevard|chemin|all[ée]e|place|cedex|bp|"
    r"straat|laan|plein|gracht|kade|calle|c/|avda|avenida|plaza|paseo|via|viale|piazza|corso|rua|travessa|largo|"
    r"ul\.|ulica|gatan|v[äa]gen|vej|gade|box)\b|@|\b\d{4,6}\b|\b\d{4}\s?[A-Z]{2}\b|\b[A-Z]{1,2}-\d{4,5}\b|〒|丁目",
    re.I,
)
PERCENT = re.compile(r"(\d{1,2}(?:[.,]\d{1,2})?)\s*%")


# Legal forms that end company names, and the letters OCR confuses inside them. A last word one
# look-alike letter away from a legal form ("ple", "lnc.", "Lld") is that form: the vocabulary is
# closed, so the correction cannot invent a name.
LEGAL_FORMS = [
    "Ltd",
    "SAS",
    "SARL",
    "NV",
    "LLC",
    "Inc",
    "GmbH",
    "plc",
    "Co",
    "Corp",
    "AG",
    "SA",
    "BV",
    "Limited",
    "SARL",
    "Srl",
    "Pty",
    "KG",
    "Oy",
]
_LOOKALIKES = [set(x) for x in ("ce", "l1i", "o0", "tf", "nm", "s5", "b8", "g6")]


def _lookalike(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in _LOOKALIKES)


def fix_legal_form(name: str) -> str:
    """'Brightpath Media ple' → 'Brightpath Media plc'; names already right are returned as they are."""
    words = name.split(" ")
    if len(words) < 2:
        return name
    last = words[-1]
    letters = [(i, c) for i, c in enumerate(last) if c.isalnum()]
    plain = "".join(c for _, c in letters)
    for form in LEGAL_FORMS:
        if plain.lower() == form.lower():
            return name
    for form in LEGAL_FORMS:
        if len(form) != len(plain) or len(form) < 2:
            continue
        diffs = [(i, a, b) for (i, a), b in zip(letters, form, strict=True) if a.lower() != b.lower()]
        if len(diffs) == 1 and _lookalike(diffs[0][1].lower(), diffs[0][2].lower()):
            position, _, wanted = diffs[0]
            fixed = last[:position] + wanted + last[position + 1 :]
            return " ".join([*words[:-1], fixed])
    return name
