"""Draw the add-on's icon.png (128x128) and logo.png (250x100).

Run from anywhere with Pillow installed (python3 -m venv v && v/bin/pip install pillow):

    python3 roamcore_victron/artwork/draw.py

The motif is a battery with a lightning bolt on a blue tile; the logo adds the name.
The shapes are drawn at 4x size and scaled down, which smooths their edges.
"""

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ADDON_DIR = Path(__file__).resolve().parent.parent
SCALE = 4
BLUE = (0, 84, 166, 255)
WHITE = (255, 255, 255, 255)
AMBER = (255, 183, 0, 255)
DARK = (33, 33, 33, 255)


def draw_mark(draw: ImageDraw.ImageDraw, left: int, top: int, size: int) -> None:
    """Draw the blue tile with the battery and bolt into a size x size square."""
    radius = size // 6
    draw.rounded_rectangle((left, top, left + size, top + size), radius, fill=BLUE)

    # Battery body and its terminal.
    body = (left + size * 0.18, top + size * 0.30, left + size * 0.76, top + size * 0.72)
    draw.rounded_rectangle(body, size // 20, outline=WHITE, width=max(2, size // 18))
    terminal = (left + size * 0.76, top + size * 0.43, left + size * 0.84, top + size * 0.59)
    draw.rectangle(terminal, fill=WHITE)

    # Lightning bolt across the battery.
    bolt = [
        (0.52, 0.22), (0.34, 0.53), (0.46, 0.53),
        (0.40, 0.80), (0.62, 0.46), (0.50, 0.46), (0.58, 0.22),
    ]
    draw.polygon([(left + x * size, top + y * size) for x, y in bolt], fill=AMBER)


def font(size: int) -> ImageFont.ImageFont:
    """Return a bold sans-serif font if the system has one, else Pillow's built-in font."""
    for name in ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def make_icon() -> Image.Image:
    size = 128 * SCALE
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw_mark(ImageDraw.Draw(image), 0, 0, size)
    return image.resize((128, 128), Image.LANCZOS)


def make_logo() -> Image.Image:
    width, height = 250 * SCALE, 100 * SCALE
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    mark = 76 * SCALE
    draw_mark(draw, 6 * SCALE, (height - mark) // 2, mark)
    text_left = 92 * SCALE
    draw.text((text_left, 24 * SCALE), "RoamCore", font=font(25 * SCALE), fill=DARK)
    draw.text((text_left, 54 * SCALE), "Victron", font=font(22 * SCALE), fill=BLUE)
    return image.resize((250, 100), Image.LANCZOS)


def main() -> None:
    make_icon().save(ADDON_DIR / "icon.png", optimize=True)
    make_logo().save(ADDON_DIR / "logo.png", optimize=True)
    print(f"wrote {ADDON_DIR / 'icon.png'} and {ADDON_DIR / 'logo.png'}")


if __name__ == "__main__":
    main()
