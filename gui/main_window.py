"""The main window: a navigation list and a stack of pages. Pages do the work; this only wires."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QStyle,
    QWidget,
)

from gui import notifications, style
from gui.context import ENGINE_PYTHON_KEY, AppContext, forget_engine_checks
from gui.pages.datasets import DatasetsPage
from gui.pages.evaluate import EvaluatePage
from gui.pages.prompt import PromptPage
from gui.pages.runs import RunsPage
from gui.pages.setup import SetupPage
from gui.pages.sweeps import SweepsPage
from gui.pages.train import TrainPage

DEFAULT_SIZE = QSize(1280, 800)
NAV_WIDTH = 168
START_PAGE = "Train"


class MainWindow(QMainWindow):
    """Navigation on the left, one page at a time on the right, a status bar below."""

    def __init__(self, context: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._context = context
        self.setWindowTitle("Tunebench")
        self.setStyleSheet(style.STYLESHEET)
        self.resize(DEFAULT_SIZE)
        self.datasets_page = DatasetsPage(context)
        self.prompt_page = PromptPage(context)
        self.train_page = TrainPage(context)
        self.evaluate_page = EvaluatePage(context)
        self.runs_page = RunsPage(context)
        self.sweeps_page = SweepsPage(context)
        self.setup_page = SetupPage(context)
        self.pages: dict[str, QWidget] = {
            "Datasets": self.datasets_page,
            "Prompt": self.prompt_page,
            "Train": self.train_page,
            "Evaluate": self.evaluate_page,
            "Runs": self.runs_page,
            "Sweeps": self.sweeps_page,
            "Setup": self.setup_page,
        }
        # The pages that run engine jobs, which must stop when the window closes. Not Train:
        # its runs belong to the queue worker and go on after the window closes.
        self._job_pages: dict[str, DatasetsPage | PromptPage | EvaluatePage | RunsPage | SweepsPage | SetupPage] = {
            "Datasets": self.datasets_page, "Prompt": self.prompt_page,
            "Evaluate": self.evaluate_page, "Runs": self.runs_page, "Sweeps": self.sweeps_page,
            "Setup": self.setup_page}
        self._build()
        self._connect_pages()
        # No engine yet (the installed app's GUI environment has no torch): open on Setup.
        self.show_page("Setup" if self._apply_engine_state() else START_PAGE)
        self._check_engine_version()

    def _build(self) -> None:
        self.nav = QListWidget(objectName="nav")
        self.nav.setFixedWidth(NAV_WIDTH)
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # no focus frame around the current page
        self.stack = QStackedWidget()
        icons = {
            "Datasets": QStyle.StandardPixmap.SP_DirIcon,
            "Prompt": QStyle.StandardPixmap.SP_FileDialogContentsView,
            "Train": QStyle.StandardPixmap.SP_MediaPlay,
            "Evaluate": QStyle.StandardPixmap.SP_DialogApplyButton,
            "Runs": QStyle.StandardPixmap.SP_FileDialogDetailedView,
            "Sweeps": QStyle.StandardPixmap.SP_FileDialogListView,
            "Setup": QStyle.StandardPixmap.SP_ComputerIcon,
        }
        for title, page in self.pages.items():
            QListWidgetItem(self.style().standardIcon(icons[title]), title, self.nav)
            self.stack.addWidget(page)
        self.nav.currentRowChanged.connect(self.stack.setCurrentIndex)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self.statusBar().addPermanentWidget(QLabel(f"Workspace: {self._context.workspace_dir}"))

    def _connect_pages(self) -> None:
        self.train_page.sig_run_finished.connect(self._on_train_run_finished)
        self.datasets_page.sig_datasets_changed.connect(self.train_page.refresh_datasets)
        self.runs_page.sig_resume_requested.connect(self._on_runs_resume_requested)
        self.runs_page.sig_continue_requested.connect(self._on_runs_continue_requested)
        # A deleted run's adapter must leave the playground's list too.
        self.runs_page.sig_run_deleted.connect(lambda _run_id: self.prompt_page.refresh_adapters())
        self.sweeps_page.sig_open_run.connect(self._on_sweeps_open_run)
        self.sweeps_page.sig_continue_requested.connect(self._on_runs_continue_requested)
        self.sweeps_page.sig_evaluate_requested.connect(self._on_sweeps_evaluate_requested)
        self.setup_page.sig_engine_changed.connect(self._on_engine_changed)
        self.setup_page.sig_engine_stale.connect(self.statusBar().showMessage)
        self._start_tip = self.train_page.start_button.toolTip()
        self._engine_problem: str | None = None

    def _apply_engine_state(self) -> str | None:
        """Ask whether the engine can run (cached per interpreter) and tell the pages.

        Jobs started through EngineClient refuse by themselves with one line; Train's queue
        worker is a detached process, so its Start waits for the engine here."""
        problem, had_problem = self._context.engine_problem(), self._engine_problem
        self._engine_problem = problem
        self.setup_page.show_engine_problem(problem)
        self.train_page.start_button.setEnabled(problem is None)
        self.train_page.start_button.setToolTip(problem or self._start_tip)
        if problem:
            self.train_page.status_label.show_message(problem, error=True)
        elif had_problem:
            self.train_page.status_label.show_message("Ready.")
        return problem

    def _check_engine_version(self) -> None:
        """After an upgrade the engine environment the Setup page built may be out of date: its
        check runs in the background now, and says so in the status bar."""
        own = self._context.engine_override is None and self._context.load_settings().get(ENGINE_PYTHON_KEY)
        if own and self._engine_problem is None:
            self.setup_page.check()

    def _on_engine_changed(self, _python: str) -> None:
        forget_engine_checks()
        self._apply_engine_state()

    def show_page(self, title: str) -> None:
        self.nav.setCurrentRow(list(self.pages).index(title))

    def current_page_title(self) -> str:
        return list(self.pages)[self.stack.currentIndex()]

    def _engine_missing(self) -> bool:
        """Say so and show Setup when the engine is not set up (before queueing a run)."""
        problem = self._context.engine_problem()
        if problem:
            self.statusBar().showMessage(problem, 10_000)
            self.show_page("Setup")
        return problem is not None

    def _on_runs_resume_requested(self, run_id: str) -> None:
        if self._engine_missing():
            return
        if self.train_page.resume(run_id):
            self.show_page("Train")

    def _on_runs_continue_requested(self, run_id: str) -> None:
        if self._engine_missing():
            return
        self.train_page.continue_training(run_id)
        self.show_page("Train")

    def _on_sweeps_open_run(self, run_id: str) -> None:
        self.runs_page.refresh()
        self.runs_page.select_run(run_id)
        self.show_page("Runs")

    def _on_sweeps_evaluate_requested(self, run_id: str) -> None:
        self.show_page("Evaluate")  # its showEvent re-lists the adapters first
        self.evaluate_page.tick_adapters([run_id])

    def _on_train_run_finished(self, run_dir: str) -> None:
        self.runs_page.on_run_finished(run_dir)
        self.prompt_page.refresh_adapters()
        self.statusBar().showMessage("Training run ended; see the Runs page.", 10_000)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt API)
        busy = [title for title, page in self._job_pages.items() if page.is_busy()]
        if busy and not self._confirm_close(busy):
            event.ignore()
            return
        for page in self._job_pages.values():
            page.shutdown()
        notices = len(self.train_page.notifier.sent)
        self.train_page.shutdown()  # stops following; tells the user the run goes on
        if len(self.train_page.notifier.sent) > notices and not self.train_page.notifier.uses_tray:
            # No tray: the page's banner closes with the window, so the notice gets its own.
            self.parting_notice = notifications.show_parting_notice(self.train_page.notifier.sent[-1])
        super().closeEvent(event)

    def _confirm_close(self, busy: list[str]) -> bool:
        answer = QMessageBox.question(
            self, "Stop running jobs?",
            f"A job is still running ({', '.join(busy)}). Closing the window stops it (training "
            "runs are not affected: they go on in the background).")
        return answer == QMessageBox.StandardButton.Yes
