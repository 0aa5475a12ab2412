"""The window's stylesheet: light, quiet, with one accent colour for primary actions."""

ACCENT = "#2563eb"
ACCENT_DARK = "#1d4ed8"
TEXT_MUTED = "#5b6473"
BORDER = "#d5dae1"
ERROR = "#b42318"
FITS = "#166534"

STYLESHEET = f"""
QListWidget#nav {{
    background: #f3f5f8;
    border: none;
    border-right: 1px solid {BORDER};
    padding-top: 8px;
    font-size: 11pt;
    outline: 0;
}}
QListWidget#nav::item {{
    padding: 9px 12px;
    margin: 1px 6px;
    border-radius: 6px;
    color: #273043;
}}
QListWidget#nav::item:selected {{
    background: #dde7fb;
    color: {ACCENT_DARK};
}}
QListWidget#nav::item:hover:!selected {{
    background: #e8ecf2;
}}
QGroupBox {{
    font-weight: 600;
    border: 1px solid {BORDER};
    border-radius: 6px;
    margin-top: 14px;
    padding: 10px 8px 6px 8px;
}}
QGroupBox::title {{
    subcontrol-origin: margin;
    left: 10px;
    padding: 0 4px;
}}
QLabel#hint {{
    color: {TEXT_MUTED};
}}
QLabel#section {{
    font-weight: 600;
}}
QLabel#status[error="true"] {{
    color: {ERROR};
}}
QLabel#fitAnswer[state="fits"] {{
    color: {FITS};
    font-weight: 600;
}}
QLabel#fitAnswer[state="nofit"], QLabel#fitAnswer[state="error"] {{
    color: {ERROR};
    font-weight: 600;
}}
QLabel#fitAnswer[state="busy"] {{
    color: {TEXT_MUTED};
}}
QPushButton {{
    padding: 5px 14px;
}}
QPushButton#primary {{
    background: {ACCENT};
    color: white;
    border: 1px solid {ACCENT_DARK};
    border-radius: 4px;
    font-weight: 600;
}}
QPushButton#primary:hover {{
    background: {ACCENT_DARK};
}}
QPushButton#primary:disabled {{
    background: #9db5ea;
    border-color: #9db5ea;
}}
QProgressBar {{
    border: 1px solid {BORDER};
    border-radius: 4px;
    text-align: center;
    min-height: 20px;
}}
QProgressBar::chunk {{
    background: #93b4f5;
    border-radius: 3px;
}}
"""
