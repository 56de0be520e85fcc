"""JPEG 2000 at reduced resolution: OpenJPEG's resolution-level decoding through ctypes.

pylibjpeg-openjpeg (what pydicom decodes JPEG 2000 with) always decodes the full image. The
OpenJPEG library it bundles (exported C API, openjpeg.h of OpenJPEG 2.5) also decodes a
codestream at ``2^-r`` of its size by skipping the ``r`` finest wavelet resolution levels
(``opj_set_decoded_resolution_factor``), and on several threads (``opj_codec_set_threads``).
This module binds those few functions of that already-installed library; when the symbols are
not there (another build of the package) ``available()`` is False and callers decode in full.

Geometry of a reduced image (ITU-T T.800 Annex B.5 / F.3): the lowpass sample ``n`` of one
decomposition level is centred on sample ``2n`` of the level above (the 5/3 and 9/7 filters are
symmetric about the even samples), so with the image origin at 0, reduced pixel ``i`` is centred
on source pixel ``i * 2^r``, and the reduced image has ``ceil(N / 2^r)`` pixels on an axis of
``N``. ``tests/io/test_decode_reduced.py`` checks this on encoded patterns.
"""

from __future__ import annotations

import ctypes
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_CODEC_J2K, _CODEC_JP2 = 0, 2
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


class _Comp(ctypes.Structure):  # opj_image_comp_t
    _fields_ = [("dx", ctypes.c_uint32), ("dy", ctypes.c_uint32), ("w", ctypes.c_uint32), ("h", ctypes.c_uint32),
                ("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("prec", ctypes.c_uint32), ("bpp", ctypes.c_uint32),
                ("sgnd", ctypes.c_uint32), ("resno_decoded", ctypes.c_uint32), ("factor", ctypes.c_uint32),
                ("data", ctypes.POINTER(ctypes.c_int32)), ("alpha", ctypes.c_uint16)]


class _Image(ctypes.Structure):  # opj_image_t
    _fields_ = [("x0", ctypes.c_uint32), ("y0", ctypes.c_uint32), ("x1", ctypes.c_uint32), ("y1", ctypes.c_uint32),
                ("numcomps", ctypes.c_uint32), ("color_space", ctypes.c_int), ("comps", ctypes.POINTER(_Comp)),
                ("icc_profile_buf", ctypes.c_void_p), ("icc_profile_len", ctypes.c_uint32)]


_READ = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)
_MSG = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)


@functools.lru_cache(maxsize=1)
def _lib() -> Any:
    """The OpenJPEG library inside pylibjpeg-openjpeg, with prototypes set; None if unusable."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("_openjpeg")  # pylibjpeg-openjpeg's extension module
        if spec is None or spec.origin is None:
            return None
        lib = ctypes.CDLL(spec.origin)
        vp, b = ctypes.c_void_p, ctypes.c_int32
        protos: dict[str, tuple[Any, list[Any]]] = {
            "opj_create_decompress": (vp, [ctypes.c_int]),
            "opj_set_default_decoder_parameters": (None, [vp]),
            "opj_setup_decoder": (b, [vp, vp]),
            "opj_codec_set_threads": (b, [vp, ctypes.c_int]),
            "opj_read_header": (b, [vp, vp, ctypes.POINTER(ctypes.POINTER(_Image))]),
            "opj_set_decoded_resolution_factor": (b, [vp, ctypes.c_uint32]),
            "opj_set_decode_area": (b, [vp, ctypes.POINTER(_Image), ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                        ctypes.c_int32]),
            "opj_decode": (b, [vp, vp, ctypes.POINTER(_Image)]),
            "opj_end_decompress": (b, [vp, vp]),
            "opj_destroy_codec": (None, [vp]),
            "opj_image_destroy": (None, [ctypes.POINTER(_Image)]),
            "opj_stream_create": (vp, [ctypes.c_size_t, b]),
            "opj_stream_destroy": (None, [vp]),
            "opj_stream_set_read_function": (None, [vp, _READ]),
            "opj_stream_set_skip_function": (None, [vp, _SKIP]),
            "opj_stream_set_seek_function": (None, [vp, _SEEK]),
            "opj_stream_set_user_data_length": (None, [vp, ctypes.c_uint64]),
            "opj_set_error_handler": (b, [vp, _MSG, vp]),
            "opj_set_warning_handler": (b, [vp, _MSG, vp]),
            "opj_version": (ctypes.c_char_p, []),
            "opj_has_thread_support": (b, []),
        }
        for name, (res, args) in protos.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        major, minor = (int(x) for x in lib.opj_version().decode().split(".")[:2])
        if (major, minor) < (2, 5):  # the struct layouts above are those of 2.5
            return None
        return lib
    except (ImportError, OSError, AttributeError, ValueError):
        return None


def thread_support() -> bool:
    """Whether this OpenJPEG build decodes on several threads."""
    lib = _lib()
    return bool(lib is not None and lib.opj_has_thread_support())


def available() -> bool:
    """Whether reduced-resolution JPEG 2000 decoding is possible here."""
    return _lib() is not None


@dataclass(frozen=True)
class MainHeader:
    """What the main header of a JPEG 2000 codestream says (T.800 A.5.1, A.6.1–A.6.2)."""

    levels: int  # the fewest wavelet decomposition levels in COD / COC: the most ``reduce`` may ask for
    components: int
    precision: int  # bits of the first component
    signed: bool


def main_header(codestream: bytes) -> MainHeader:
    """Parse the main header of a JPEG 2000 codestream (or a JP2 file's codestream box)."""
    buf = memoryview(codestream)
    start = 0
    if bytes(buf[:2]) != b"\xff\x4f":  # JP2: the contiguous codestream box holds the SOC marker
        start = bytes(buf[:65536]).find(b"jp2c\xff\x4f") + 4
        if start < 4:
            raise ValueError("no JPEG 2000 codestream found")
    pos = start + 2
    levels: list[int] = []
    csiz, ssiz = 0, 0
    while pos + 4 <= len(buf):
        marker, length = struct.unpack(">HH", buf[pos:pos + 4])
        if marker == 0xFF90:  # SOT: end of the main header
            break
        seg = buf[pos + 4:pos + 2 + length]
        if marker == 0xFF51:  # SIZ: Rsiz(2) Xsiz..YTOsiz(32) Csiz(2), then Ssiz XRsiz YRsiz per component
            csiz, ssiz = struct.unpack(">H", seg[34:36])[0], seg[36]
        elif marker == 0xFF52:  # COD: Scod(1) SGcod(4) SPcod: NL first
            levels.append(seg[5])
        elif marker == 0xFF53:  # COC: Ccoc(1 or 2) Scoc(1) SPcoc: NL first
            levels.append(seg[(2 if csiz >= 257 else 1) + 1])
        pos += 2 + length
    if not levels or not csiz:
        raise ValueError("no SIZ or COD marker in the JPEG 2000 main header")
    return MainHeader(min(levels), csiz, (ssiz & 0x7F) + 1, bool(ssiz & 0x80))


def decomposition_levels(codestream: bytes) -> int:
    """Wavelet decomposition levels of a JPEG 2000 codestream: the most ``reduce`` may ask for."""
    return main_header(codestream).levels


class _MemoryStream:
    """An OpenJPEG input stream over bytes in memory (read / skip / seek callbacks)."""

    def __init__(self, lib: Any, data: bytes) -> None:
        self.data, self.pos = data, 0
        self.callbacks = (_READ(self.read), _SKIP(self.skip), _SEEK(self.seek))  # kept alive with the stream
        self.handle = lib.opj_stream_create(len(data), 1)
        lib.opj_stream_set_read_function(self.handle, self.callbacks[0])
        lib.opj_stream_set_skip_function(self.handle, self.callbacks[1])
        lib.opj_stream_set_seek_function(self.handle, self.callbacks[2])
        lib.opj_stream_set_user_data_length(self.handle, len(data))

    def read(self, dst: int, n: int, _user: int) -> int:
        k = min(n, len(self.data) - self.pos)
        if k <= 0:
            return ctypes.c_size_t(-1).value  # end of stream
        ctypes.memmove(dst, self.data[self.pos:self.pos + k], k)
        self.pos += k
        return k

    def skip(self, n: int, _user: int) -> int:
        new = min(max(self.pos + n, 0), len(self.data))
        moved, self.pos = new - self.pos, new
        return moved

    def seek(self, n: int, _user: int) -> int:
        if not 0 <= n <= len(self.data):
            return 0
        self.pos = n
        return 1


def decode_reduced(codestream: bytes, reduce: int, threads: int = 1,
                   area: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Decode one greyscale JPEG 2000 frame at ``2^-reduce`` of its size → ``(rows, cols)`` int32.

    ``area`` ``(x0, y0, x1, y1)`` in full-resolution pixels limits decoding to that region (the
    result then starts at reduced pixel ``ceil(x0 / 2^reduce)``, ``ceil(y0 / 2^reduce)``).
    Raises ``RuntimeError`` with OpenJPEG's message when decoding fails.
    """
    lib = _lib()
    if lib is None:
        raise RuntimeError("reduced JPEG 2000 decoding is not available (OpenJPEG symbols not found)")
    data = bytes(codestream)
    messages: list[str] = []
    on_error = _MSG(lambda msg, _u: messages.append(msg.decode(errors="replace").strip()))
    quiet = _MSG(lambda _m, _u: None)
    codec = lib.opj_create_decompress(_CODEC_JP2 if data[:12] == _JP2_MAGIC else _CODEC_J2K)
    stream = _MemoryStream(lib, data)
    image = ctypes.POINTER(_Image)()
    try:
        lib.opj_set_error_handler(codec, on_error, None)
        lib.opj_set_warning_handler(codec, quiet, None)
        params = ctypes.create_string_buffer(1 << 15)  # opj_dparameters_t (about 8.3 kB) and room to spare
        lib.opj_set_default_decoder_parameters(params)
        if threads > 1:  # a build without thread support says no: then one thread
            lib.opj_codec_set_threads(codec, threads)
        steps: list[tuple[str, Callable[[], int]]] = [
            ("setup", lambda: lib.opj_setup_decoder(codec, params)),
            ("header", lambda: lib.opj_read_header(stream.handle, codec, ctypes.byref(image))),
            ("reduce", lambda: lib.opj_set_decoded_resolution_factor(codec, reduce))]
        if area is not None:
            steps.append(("area", lambda: lib.opj_set_decode_area(codec, image, *area)))
        steps += [("decode", lambda: lib.opj_decode(codec, stream.handle, image)),
                  ("end", lambda: lib.opj_end_decompress(codec, stream.handle))]
        for name, step in steps:
            if not step():
                raise RuntimeError(f"OpenJPEG {name} failed: {'; '.join(messages) or 'no message'}")
        img = image.contents
        if img.numcomps != 1 or (area is None and (img.x0 or img.y0)):
            raise RuntimeError(f"{img.numcomps} components, origin ({img.x0}, {img.y0}); only a greyscale image "
                               "with its origin at 0 is decoded at reduced resolution")
        comp = img.comps[0]
        out: np.ndarray = np.ctypeslib.as_array(comp.data, shape=(int(comp.h), int(comp.w))).copy()
    finally:
        if image:
            lib.opj_image_destroy(image)
        lib.opj_stream_destroy(stream.handle)
        lib.opj_destroy_codec(codec)
    return out
