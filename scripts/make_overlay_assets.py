"""Draw the overlay assets shipped with facekp (facekp_cli/overlay_assets/*.png), reproducibly.

Run: .venv/bin/python scripts/make_overlay_assets.py (with `tour`: docs/tour/overlay_assets.jpg).
Shapes are drawn at 4x and shrunk, for
smooth edges. Anchor coordinates in assets.toml refer to the final pixels printed here.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "facekp_cli" / "overlay_assets"
K = 4  # supersampling


def canvas(width: int, height: int):
    image = Image.new("RGBA", (width * K, height * K), (0, 0, 0, 0))
    return image, ImageDraw.Draw(image)


def box(cx: float, cy: float, rx: float, ry: float) -> list[float]:
    return [(cx - rx) * K, (cy - ry) * K, (cx + rx) * K, (cy + ry) * K]


def save(image: Image.Image, name: str) -> None:
    small = image.resize((image.width // K, image.height // K), Image.LANCZOS)
    small.save(OUT / name, optimize=True)
    print(f"{name}: {small.width}x{small.height}")


def glasses() -> None:
    # lens centres at (64, 48) and (192, 48): the anchors on the pupils
    image, draw = canvas(256, 96)
    for cx in (64, 192):
        draw.ellipse(box(cx, 48, 46, 38), fill=(40, 60, 90, 110))  # tinted glass
        draw.ellipse(box(cx, 48, 46, 38), outline=(20, 20, 20, 255), width=7 * K)
    draw.arc(box(128, 52, 20, 14), 200, 340, fill=(20, 20, 20, 255), width=6 * K)  # bridge
    draw.line([18 * K, 40 * K, 2 * K, 30 * K], fill=(20, 20, 20, 255), width=6 * K)  # temples
    draw.line([238 * K, 40 * K, 254 * K, 30 * K], fill=(20, 20, 20, 255), width=6 * K)
    save(image, "glasses.png")


def mask() -> None:
    # a masquerade mask; the outer ends of the eye holes at (44, 50) and (212, 50): the anchors
    # on the outer eye corners
    image, draw = canvas(256, 110)
    red = (170, 20, 40, 235)
    draw.rounded_rectangle([4 * K, 18 * K, 252 * K, 86 * K], radius=34 * K, fill=red)
    draw.polygon([(108 * K, 86 * K), (128 * K, 60 * K), (148 * K, 86 * K)], fill=(0, 0, 0, 0))  # nose gap
    for cx in (80, 176):
        draw.ellipse(box(cx, 50, 36, 20), fill=(0, 0, 0, 0))  # eye holes
        draw.ellipse(box(cx, 50, 38, 22), outline=(240, 200, 60, 255), width=3 * K)
    save(image, "mask.png")


def moustache() -> None:
    # a handlebar moustache; its ends rest above the mouth corners at (34, 50) and (166, 50)
    image, draw = canvas(200, 70)
    brown = (70, 40, 20, 245)
    draw.ellipse(box(72, 38, 40, 18), fill=brown)
    draw.ellipse(box(128, 38, 40, 18), fill=brown)
    draw.pieslice(box(30, 34, 22, 22), 90, 200, fill=brown)
    draw.pieslice(box(170, 34, 22, 22), 340, 90, fill=brown)
    draw.ellipse(box(100, 28, 14, 8), fill=(0, 0, 0, 0))  # philtrum notch
    save(image, "moustache.png")


def tour_picture(path: Path) -> None:
    """Each shipped asset on the exact labels of six synthetic faces (docs/tour/overlay_assets.jpg)."""
    import numpy as np

    from facekp_cli.apps.overlay import asset_names, load_asset, overlay_faces
    from facekp_cli.data.synth.generator import render_image

    faces = [render_image(0, i) for i in range(40)]
    faces = [f for f in faces if min(f.image.shape[:2]) >= 120][:6]
    rows = []
    for name in asset_names():
        asset = load_asset(name)
        tiles = []
        for face in faces:
            rgb = np.ascontiguousarray(face.image[..., ::-1])  # the generator draws BGR
            drawn = Image.fromarray(overlay_faces(rgb, asset, [face.keypoints]))
            tiles.append(np.asarray(drawn.resize((128, 128), Image.LANCZOS)))
        rows.append(np.hstack(tiles))
    Image.fromarray(np.vstack(rows)).save(path, quality=85)
    print(f"wrote {path}")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["tour"]:
        tour_picture(OUT.parent.parent / "docs" / "tour" / "overlay_assets.jpg")
    else:
        OUT.mkdir(exist_ok=True)
        glasses()
        mask()
        moustache()
