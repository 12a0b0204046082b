"""Language of one recognised text line, from its script and a few word lists.

Kana means Japanese, Hangul Korean, Thai script Thai. Han-only lines are told apart as
Simplified or Traditional Chinese by characters that exist in only one of the two
scripts. Latin lines are English or Indonesian by common-word counts. Anything else
maps to the one language its script is written in, or ``None`` when that is unclear.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

# Traditional characters and their simplified forms, aligned position by position. Only
# pairs where each form is (practically) absent from the other script are listed, so a
# hit on either side is evidence; pairs such as 後/后, 面/麵 or 制/製, whose simplified
# form is also an ordinary traditional character, are left out on purpose.
_TRADITIONAL = (
    "們這說國來會時買賣錢點電話個對開關門問間聽見現覺學書長車東樂愛氣飛馬魚鳥龍體頭臉還"
    "進過運達遠連邊讓認識請謝語讀寫記許論議講試誰課貝貨費貴資質購貸價務動勞勢區醫華單號"
    "嗎園圖團場壞聲處備夠奪婦媽寶實將專導層歲島師帶幫幣廣應張強當錄從徑戀戰戲報擇擔據換"
    "數斷無舊極樓標機權條歡歷殺漢滿濟灣熱燈爭爾獎產畫發盡監眾確禮種穩競筆節簡類級紅約紙"
    "練組經結給統絕網線總編緊縣聯職腦與興舉艱藝藥蟲衛補裝規視親觀計訂訊設訪診該詳誤調談"
    "證變讚貓貼賽賺贏趕軍輕載輛輸轉辦農適選遺鄉鐘鐵銀鋪鏡陽陰隊際險隨雖雙雞離難靈響頁項"
    "順須預領題額顏顯風飯飲館驗驚髮鬧麗黃齊齒優傳傷億兒內兩剛創勝卻參吳員啟喚嚴圍堅壓夢"
    "奮尋屬歸廳彈態慣憶懷戶擁擊擴敗敵沒淚測溫漲潔濃燒爺牽獨環療盤碼礎禪稅積窮簽紀純細終"
    "絡綠維續羅義習聞聖聰膚臨蘋蘭襯覽觸訴詞評詢賀賴趨跡蹤較輪辭邏醬釋針鈴錯鍋閃閱隱雜靜"
    "韓頓頻餅養騙驅魯鮮麥黨龜憂瀏貿廠藍蘇輯劍壽彎燦瘋盜織膽艦襲詩謎貧賓贈軟輩遲邁鄰鋼鎖"
    "閉陳陸韋頸顧騎驟鴨鹽麼"
)
_SIMPLIFIED = (
    "们这说国来会时买卖钱点电话个对开关门问间听见现觉学书长车东乐爱气飞马鱼鸟龙体头脸还"
    "进过运达远连边让认识请谢语读写记许论议讲试谁课贝货费贵资质购贷价务动劳势区医华单号"
    "吗园图团场坏声处备够夺妇妈宝实将专导层岁岛师带帮币广应张强当录从径恋战戏报择担据换"
    "数断无旧极楼标机权条欢历杀汉满济湾热灯争尔奖产画发尽监众确礼种稳竞笔节简类级红约纸"
    "练组经结给统绝网线总编紧县联职脑与兴举艰艺药虫卫补装规视亲观计订讯设访诊该详误调谈"
    "证变赞猫贴赛赚赢赶军轻载辆输转办农适选遗乡钟铁银铺镜阳阴队际险随虽双鸡离难灵响页项"
    "顺须预领题额颜显风饭饮馆验惊发闹丽黄齐齿优传伤亿儿内两刚创胜却参吴员启唤严围坚压梦"
    "奋寻属归厅弹态惯忆怀户拥击扩败敌没泪测温涨洁浓烧爷牵独环疗盘码础禅税积穷签纪纯细终"
    "络绿维续罗义习闻圣聪肤临苹兰衬览触诉词评询贺赖趋迹踪较轮辞逻酱释针铃错锅闪阅隐杂静"
    "韩顿频饼养骗驱鲁鲜麦党龟忧浏贸厂蓝苏辑剑寿弯灿疯盗织胆舰袭诗谜贫宾赠软辈迟迈邻钢锁"
    "闭陈陆韦颈顾骑骤鸭盐么"
)
TRADITIONAL_ONLY: frozenset[str] = frozenset(_TRADITIONAL)
# 发 stands for both 發 and 髮, so it appears twice in the aligned list.
SIMPLIFIED_ONLY: frozenset[str] = frozenset(_SIMPLIFIED)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


INDONESIAN_WORDS: frozenset[str] = _words(
    """
    yang dan di ini itu untuk dengan tidak ada dari ke akan pada juga saya kami kita anda
    kamu dia mereka atau karena jika kalau bisa sudah belum telah sedang masih hanya lebih
    sangat semua banyak baru lagi hari tahun bulan minggu orang rumah harga gratis murah
    hubungi diskon beli jual dijual toko kopi makan minum sekarang segera dapatkan kunjungi
    silakan terima kasih selamat pagi siang malam baik bagus besar kecil satu dua tiga empat
    lima ribu juta rupiah uang kerja bayar pesan kirim mulai setiap tanpa oleh tentang
    seperti bagi agar supaya tetapi tapi namun saat waktu tempat kota jalan nomor pinjaman
    cepat mudah aman resmi terpercaya langsung hadiah menang pemenang daftar sini sana mana
    apa siapa bagaimana kenapa mengapa dalam luar atas bawah antara sampai hingga sebagai
    para yg dgn utk tdk sdh jgn gak nggak aja dong ayo mari tunggu cari temukan pilih
    tersedia khusus hemat potongan pengiriman pembayaran belanja produk layanan pelanggan
    lengkap terbaru terbaik termurah asli dijamin sekali lagi cuma saja bersama buka
    tutup setiap perlu mau ingin tahu lihat klik sekarang juga anak ibu bapak kakak adik
    teman keluarga indonesia jakarta rasa enak panas dingin air nasi ayam sapi ikan
    """
)

ENGLISH_WORDS: frozenset[str] = (
    _words(
        """
    the and of to in is are was were for on with at by from this that these those it its
    you your we our they their he she his her i my me be been being have has had do does
    did not no yes or but if so as an a all new now today free buy sell sale shop store
    call visit get best more most only just can will would should could here there what
    when where who how why which one two three up out about into over off price cheap
    offer click order online money contact us open day week time good great love like make
    see go come world home now save win winner prize deal deals discount shipping limited
    order now join sign login account password bank send first last every each than then
    also very much many some any other our new get off per year month free please thank
    thanks welcome hello happy help need want know look find check enjoy taste fresh hot
    cold best quality service team people life work job jobs earn fast easy safe official
    """
    )
    - INDONESIAN_WORDS
)

_LATIN_WEIGHT = 1 / 3

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)

# Scripts written (almost) only in one language, by Unicode block.
_SINGLE_LANGUAGE_BLOCKS: tuple[tuple[int, int, str], ...] = (
    (0x0370, 0x03FF, "el"),
    (0x0530, 0x058F, "hy"),
    (0x0590, 0x05FF, "he"),
    (0x0900, 0x097F, "hi"),
    (0x0980, 0x09FF, "bn"),
    (0x0A00, 0x0A7F, "pa"),
    (0x0A80, 0x0AFF, "gu"),
    (0x0B80, 0x0BFF, "ta"),
    (0x0C00, 0x0C7F, "te"),
    (0x0C80, 0x0CFF, "kn"),
    (0x0D00, 0x0D7F, "ml"),
    (0x0D80, 0x0DFF, "si"),
    (0x0E80, 0x0EFF, "lo"),
    (0x1000, 0x109F, "my"),
    (0x10A0, 0x10FF, "ka"),
    (0x1200, 0x137F, "am"),
    (0x1780, 0x17FF, "km"),
)


def script_of(ch: str) -> str | None:
    """The script of one character: kana, hangul, thai, han, latin, a language code, or None."""
    cp = ord(ch)
    if cp == 0x30FB:  # katakana middle dot, common punctuation in Chinese text too
        return None
    if 0x3041 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9D:
        return "kana"
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return "hangul"
    if 0x0E00 <= cp <= 0x0E7F:
        return "thai"
    if (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x3134F
    ):
        return "han"
    if ch.isalpha() and unicodedata.name(ch, "").startswith(("LATIN", "FULLWIDTH LATIN")):
        return "latin"
    if 0x0400 <= cp <= 0x04FF:
        return "cyrillic"
    if 0x0600 <= cp <= 0x06FF:
        return "arabic"
    for lo, hi, lang in _SINGLE_LANGUAGE_BLOCKS:
        if lo <= cp <= hi:
            return lang
    return None


def scripts(text: str) -> Counter[str]:
    """How many characters of ``text`` belong to each script."""
    out: Counter[str] = Counter()
    for ch in text:
        s = script_of(ch)
        if s is not None:
            out[s] += 1
    return out


def chinese_variant(text: str) -> str:
    """``zh-Hant``, ``zh-Hans``, or plain ``zh`` when no character tells them apart."""
    trad = sum(ch in TRADITIONAL_ONLY for ch in text)
    simp = sum(ch in SIMPLIFIED_ONLY for ch in text)
    if trad > simp:
        return "zh-Hant"
    if simp > trad:
        return "zh-Hans"
    return "zh"


def latin_language(text: str) -> str | None:
    """``en`` or ``id`` by common-word counts; None when neither list knows any word."""
    words = [w.lower() for w in _WORD.findall(unicodedata.normalize("NFKC", text))]
    ind = sum(w in INDONESIAN_WORDS or (len(w) > 4 and w.endswith(("nya", "kan"))) for w in words)
    eng = sum(w in ENGLISH_WORDS for w in words)
    if ind == 0 and eng == 0:
        return None
    return "id" if ind > eng else "en"


def identify(text: str) -> str | None:
    """The language of one line of text (ISO 639-1, zh-Hans/zh-Hant for Chinese), or None."""
    counts = scripts(text)
    if not counts:
        return None
    # A Latin letter carries far less than a syllable or ideograph, so mixed lines such as
    # "카페 SALE" go by their non-Latin script.
    weighted = {s: n * (_LATIN_WEIGHT if s == "latin" else 1.0) for s, n in counts.items()}
    script = max(weighted, key=lambda s: weighted[s])
    if counts["kana"] and counts["kana"] + counts["han"] >= weighted[script]:
        return "ja"  # kana next to kanji (or alone) and no other script dominating
    if script == "hangul":
        return "ko"
    if script == "thai":
        return "th"
    if script == "han":
        return chinese_variant(text)
    if script == "latin":
        return latin_language(text)
    if script in ("cyrillic", "arabic"):
        return None  # shared by too many languages to name one from the script alone
    return script
