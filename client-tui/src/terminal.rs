//! Entering and leaving the terminal's interactive mode. Raw mode, the
//! alternate screen and mouse capture are undone on every way out: normal
//! return, error, and panic (through a panic hook that restores first, so the
//! panic message is readable).

use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    KeyboardEnhancementFlags, PopKeyboardEnhancementFlags, PushKeyboardEnhancementFlags,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
    supports_keyboard_enhancement,
};

/// Whether we asked the terminal for unambiguous key codes (and so must
/// ask it to stop).
static ENHANCED_KEYS: AtomicBool = AtomicBool::new(false);

/// The terminal in interactive mode; restored on drop.
pub(crate) struct Tui {
    /// The ratatui terminal.
    pub(crate) terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Leaves interactive mode. Safe to call more than once.
pub(crate) fn restore() {
    if ENHANCED_KEYS.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), PopKeyboardEnhancementFlags);
    }
    let _ = disable_raw_mode();
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen
    );
}

impl Tui {
    /// Enters interactive mode and installs the panic hook.
    pub(crate) fn enter() -> io::Result<Tui> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = execute!(
            out,
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        ) {
            restore();
            return Err(e);
        }
        // Where the terminal speaks the kitty keyboard protocol, ask for
        // unambiguous codes: Shift-Enter then arrives as such (a newline in
        // the composer), and Esc is never confused with Alt. The query reads
        // stdin, so this runs before the input thread starts.
        if matches!(supports_keyboard_enhancement(), Ok(true))
            && execute!(
                out,
                PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
            )
            .is_ok()
        {
            ENHANCED_KEYS.store(true, Ordering::SeqCst);
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(Tui { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
        let _ = self.terminal.show_cursor();
    }
}
